"""Procedural style images for the arbitrary-style network.

The arbitrary network paints in the manner of any picture it is shown. We don't ship or fetch paintings, so the
catalog's non-built-in styles come from small textures drawn here, deterministically (fixed seeds), and turned
into 100-d style vectors once when the engine loads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 256  # the style predictor was trained on 256×256 style images

Palette = tuple[tuple[float, float, float], ...]


def ink_strokes(seed: int = 7) -> Image.Image:
    """Sparse straight pen strokes of varied weight on cream paper: line-drawing ink."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (SIZE * 2, SIZE * 2), (236, 228, 208))
    draw = ImageDraw.Draw(image)
    for _ in range(260):
        x, y = rng.uniform(0, SIZE * 2, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(20, 120)
        shade = int(rng.integers(10, 70))
        draw.line(
            [(x, y), (x + length * np.cos(angle), y + length * np.sin(angle))],
            fill=(shade, max(0, shade - 5), max(0, shade - 10)),
            width=int(rng.integers(1, 5)),
        )
    return image.filter(ImageFilter.GaussianBlur(0.6)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def pigment_blooms(seed: int = 3) -> Image.Image:
    """Overlapping translucent pigment pools with darker dried rims and paper grain: watercolour."""
    rng = np.random.default_rng(seed)
    side = SIZE * 2
    paper = np.ones((side, side, 3)) * np.array([0.98, 0.96, 0.92])
    pigments = np.array([[0.85, 0.45, 0.35], [0.3, 0.5, 0.8], [0.95, 0.75, 0.3], [0.4, 0.7, 0.6], [0.7, 0.4, 0.6]])
    for _ in range(55):
        cx, cy = rng.uniform(0, side, 2)
        radius = rng.uniform(20, 90)
        phase3, phase7 = rng.uniform(0, 6), rng.uniform(0, 6)
        # Only the blob's bounding window is touched (wobble stretches the radius by at most 1.35).
        reach = int(radius * 1.35) + 2
        x0, x1 = max(0, int(cx) - reach), min(side, int(cx) + reach)
        y0, y1 = max(0, int(cy) - reach), min(side, int(cy) + reach)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        angle = np.arctan2(yy - cy, xx - cx)
        wobble = 1 + 0.25 * np.sin(3 * angle + phase3) + 0.1 * np.sin(7 * angle + phase7)
        distance = np.hypot(xx - cx, yy - cy) / (radius * wobble)
        inside = (distance < 1).astype(float)
        rim = np.exp(-((distance - 1) ** 2) / 0.004) * inside
        alpha = inside * rng.uniform(0.15, 0.35) + rim * 0.35
        pigment = pigments[rng.integers(len(pigments))]
        paper[y0:y1, x0:x1] *= 1 - alpha[..., None] * (1 - pigment)
    grain = rng.normal(0, 0.025, (side, side, 1))
    image = Image.fromarray((np.clip(paper + grain, 0, 1) * 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(1.0)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


UMBER: Palette = ((0.18, 0.11, 0.06), (0.45, 0.28, 0.14), (0.72, 0.52, 0.30), (0.10, 0.07, 0.05), (0.85, 0.70, 0.45))


def impasto_dabs(palette: Palette = UMBER, seed: int = 3) -> Image.Image:
    """Short thick diagonal brush dabs from an earth palette: loaded-brush oil."""
    rng = np.random.default_rng(seed)
    colours = np.array(palette)
    side = SIZE * 2
    image = Image.new("RGB", (side, side), tuple(int(255 * c) for c in colours[0]))
    draw = ImageDraw.Draw(image)
    for _ in range(1800):
        x, y = rng.uniform(0, side, 2)
        angle, length = rng.uniform(-0.5, 0.5) + np.pi / 4, rng.uniform(8, 26)
        colour = np.clip(colours[rng.integers(len(colours))] + rng.normal(0, 0.06, 3), 0, 1)
        draw.line(
            [(x, y), (x + length * np.cos(angle), y + length * np.sin(angle))],
            fill=tuple(int(255 * v) for v in colour),
            width=int(rng.integers(4, 9)),
        )
    return image.filter(ImageFilter.GaussianBlur(0.8)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


TEXTURES: dict[str, Callable[[], Image.Image]] = {
    "ink-strokes": ink_strokes,
    "pigment-blooms": pigment_blooms,
    "umber-impasto": impasto_dabs,
}
