"""Identity study: is every face-GAN portrait still the sitter? `make identity`.

Every study face × every face-GAN style is rendered by the engine as it ships (768 px), and — with `--before` —
as it was before issue 21 (the GAN's face as painted, without `likeness.py`). Each portrait is judged against
its framed photo by:

* **identity**: the Euclidean distance between 128-d face descriptors of dlib's face recognition ResNet (same
  person below 0.6). The judge runs dlib's *own* pipeline (dlib-bin: HOG face detector, 5-point landmarks,
  `get_face_chip`, the ResNet), not ours; where dlib is missing it falls back to our torch port and says so.
  Be warned: the worker's likeness check uses the same network's weights (our port, our alignment), so this is
  the judge the product gates on, not a fully independent one — the faces are what it has never seen;
* **complexion**: the cheeks' mean CIELAB in the aligned face crop (`likeness.cheek_lab`): ΔE to the photo's,
  the lightness shift ΔL*, and the shift Δa* on the green (−) / red (+) axis;
* **by eye**: a contact sheet per style in `var/identity/` (rows: photo crop | the GAN's raw face | the
  portrait), for sex, age band, glasses and hair colour, and for whether it still reads as a painting.

Run: `make identity` (fetches the study faces with `scripts/study_faces.py` first), or
`PYTHONPATH=. python -m scripts.identity_study [--before] [--photo FACE.jpg …]`. About a minute per pass.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from scripts.support import samples
from services.worker.engine import align, compose, likeness, recognizer
from services.worker.engine.catalog import CATALOG, GanRecipe
from services.worker.engine.config import EngineConfig
from services.worker.engine.pipeline import PortraitEngine
from shared.errors import PortraitError
from shared.settings import get_settings

GAN_STYLES = [style.name for style in CATALOG if isinstance(style.recipe, GanRecipe)]
TILE = 256


@dataclass(frozen=True)
class Judged:
    face: str
    style: str
    distance: float  # NaN when the judge found no face in the portrait
    cheek_de: float
    cheek_dl: float
    cheek_da: float


class Judge:
    """dlib's own face recognition pipeline when dlib-bin is installed; else our port (and the table says so)."""

    def __init__(self, engine: PortraitEngine, model_dir: Path) -> None:
        self.engine = engine
        try:
            import dlib

            from scripts.support.dlib_reference import shape_predictor_path

            self._dlib: Any = dlib
            self._detector = dlib.get_frontal_face_detector()
            self._shapes = dlib.shape_predictor(str(shape_predictor_path()))
            self._net = dlib.face_recognition_model_v1(str(model_dir / recognizer.MODEL_FILE))
            self.name = "dlib's own pipeline (dlib-bin)"
        except ImportError:
            self._dlib = None
            self.name = "our torch port of dlib's ResNet (dlib-bin is not installed)"

    def descriptor(self, pixels: np.ndarray, hint: Any = None) -> tuple[np.ndarray | None, Any]:
        if self._dlib is None:
            faces = self.engine.detector.detect([torch.from_numpy(pixels)])[0]
            if not faces:
                return None, None
            image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
            return self.engine.recognizer.describe(image, [faces[0]])[0].numpy(), None
        boxes = self._detector(pixels, 1)
        box = max(boxes, key=lambda b: b.area()) if len(boxes) else hint  # the photo's box where none is found
        if box is None:
            return None, None
        shape = self._shapes(pixels, box)
        return np.array(self._net.compute_face_descriptor(pixels, shape)), box


@contextmanager
def before_issue_21() -> Iterator[None]:
    """The engine as it painted before #21: the GAN's face goes in as the GAN painted it, and the old-master
    grade moves the face as far onto its ramp as the rest."""
    original, face_grade = likeness.bring_to_sitter, compose.FACE_GRADE_AMOUNT
    likeness.bring_to_sitter = lambda painted, photos, on_paper, settings=likeness.DEFAULT: painted.float()
    compose.FACE_GRADE_AMOUNT = compose.GRADE_AMOUNT
    try:
        yield
    finally:
        likeness.bring_to_sitter, compose.FACE_GRADE_AMOUNT = original, face_grade


def _pixels(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def _crop(engine: PortraitEngine, framed: np.ndarray, portraits: list[np.ndarray]) -> list[np.ndarray]:
    """The aligned 256² face crops of the framed photo and each portrait, at the photo's landmarks."""
    face = max(engine.detector.detect([torch.from_numpy(framed)])[0], key=lambda f: f.area)
    batch = torch.from_numpy(np.stack([framed, *portraits])).permute(0, 3, 1, 2).float() / 255
    crops = align.crop_faces(batch, [align.alignment(face)] * len(batch))
    return [(c.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for c in crops]


def study(engine: PortraitEngine, judge: Judge, faces: dict[str, bytes], out: Path, label: str) -> list[Judged]:
    results: list[Judged] = []
    sheets: dict[str, list[list[np.ndarray]]] = {style: [] for style in GAN_STYLES}
    for name, data in tqdm(faces.items(), desc=label, unit="face"):
        try:
            framed = _pixels(engine.render(data, style=GAN_STYLES[0], strength=0.0).data)
        except PortraitError as exc:
            print(f"  {name}: skipped ({exc.code})")
            continue
        photo_descriptor, box = judge.descriptor(framed)
        if photo_descriptor is None:
            print(f"  {name}: the judge finds no face in the photo; skipped")
            continue
        portraits = [_pixels(engine.render(data, style=style).data) for style in GAN_STYLES]
        photo_crop, *crops = _crop(engine, framed, portraits)
        raw = engine.generator._faces.paint(  # type: ignore[attr-defined]  # the study reads the GAN's own face
            (torch.from_numpy(photo_crop).permute(2, 0, 1)[None].float() / 255).expand(len(GAN_STYLES), -1, -1, -1),
            [style.recipe for style in CATALOG if style.name in GAN_STYLES],
        )
        cheeks = likeness.cheek_lab(torch.from_numpy(np.stack([photo_crop, *crops])).permute(0, 3, 1, 2) / 255)
        for i, (style, portrait) in enumerate(zip(GAN_STYLES, portraits)):
            descriptor, _ = judge.descriptor(portrait, box)
            distance = float(np.linalg.norm(descriptor - photo_descriptor)) if descriptor is not None else float("nan")
            shift = cheeks[i + 1] - cheeks[0]
            results.append(Judged(name, style, distance, float(shift.norm()), float(shift[0]), float(shift[1])))
            raw_face = (raw[i].permute(1, 2, 0).float().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            sheets[style].append([photo_crop, raw_face, crops[i], _label(name, distance)])
    for style, rows in sheets.items():
        _write_sheet(rows, out / f"{label}-{style}.jpg")
    return results


def _label(name: str, distance: float) -> np.ndarray:
    tile = Image.new("RGB", (TILE, TILE), "white")
    draw = ImageDraw.Draw(tile)
    verdict = "no face found" if distance != distance else ("same person" if distance < 0.6 else "NOT the sitter")
    draw.text((10, 100), f"{name}\ndistance {distance:.2f}\n{verdict}", fill="black")
    return np.asarray(tile)


def _write_sheet(rows: list[list[np.ndarray]], path: Path) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)).save(path, quality=88)


def table(results: list[Judged], judge: str) -> str:
    lines = [
        f"judge: {judge}; {len({r.face for r in results})} sitters",
        "| style | same person | median distance | median cheek ΔE | median ΔL* | lowest Δa* |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for style in GAN_STYLES:
        rows = [r for r in results if r.style == style]
        if not rows:
            continue
        same = sum(r.distance < recognizer.SAME_PERSON for r in rows)
        distance = statistics.median(r.distance if r.distance == r.distance else 2.0 for r in rows)
        lines.append(
            f"| {style} | {same} of {len(rows)} | {distance:.2f} | {statistics.median(r.cheek_de for r in rows):.1f}"
            f" | {statistics.median(r.cheek_dl for r in rows):+.1f} | {min(r.cheek_da for r in rows):+.1f} |"
        )
    lines.append("")
    lines.append(
        "per sitter (distance): "
        + "; ".join(
            f"{face} " + " ".join(f"{r.distance:.2f}" for r in results if r.face == face)
            for face in dict.fromkeys(r.face for r in results)
        )
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photo", type=Path, action="append", default=[], help="another face photo (repeatable)")
    parser.add_argument("--faces", type=Path, default=Path("var/faces"), help="where the study faces are fetched")
    parser.add_argument("--out", type=Path, default=Path("var/identity"))
    parser.add_argument("--before", action="store_true", help="also judge the engine as it was before #21")
    args = parser.parse_args()
    from scripts.study_faces import prepare

    paths = prepare(args.faces)
    paths.update({path.stem: path for path in args.photo})
    faces = {name: path.read_bytes() for name, path in paths.items()}
    # The registries hold one dark-skinned sitter (two photos of one man): two more, made, not found — a woman
    # of 40 and one of 80, moved to dark skin in CIELAB — test complexion, not the recogniser.
    for name in ("astronaut", "hopper"):
        if name in paths:
            faces[f"{name}-darkened"] = samples.darkened(paths[name])
    settings = get_settings()
    engine = PortraitEngine(EngineConfig.from_settings(settings.model_copy(update={"output_size": 768})))
    judge = Judge(engine, settings.model_dir)
    passes = [("before", before_issue_21), ("after", None)] if args.before else [("after", None)]
    report = []
    for label, context in passes:
        started = time.perf_counter()
        with context() if context else _nothing():
            results = study(engine, judge, faces, args.out, label)
        report.append(f"## {label} ({time.perf_counter() - started:.0f} s)\n{table(results, judge.name)}\n")
        print(report[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text("\n".join(report))
    print(f"sheets and report.md in {args.out}/")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
