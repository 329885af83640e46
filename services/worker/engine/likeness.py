"""Bring a GAN-painted face into the sitter's shape and colour, keeping the GAN's brushwork (#21).

The face GAN paints from a 12×512 latent that has lost much of who the sitter is: left alone it whitened dark
skin (cheek a* from about +20 to −3), turned men into women and the old young, and an independent recogniser
matched 0–1 of 11 sitters to their GAN portraits. Three steps, each measured on the identity study's faces
(`make identity`; figures in docs/likeness.md), put the sitter back without handing the face to a filter:

1. **Shape** — dense optical flow (OpenCV's DIS) from the photo's crop to the painting's, on their lightness
   after step 2's colour match, confined to the head, warps the painted face onto the sitter's own eyes,
   mouth, nose and jaw. Two passes: the second corrects what the first could not reach. Median recogniser
   distance 0.68–0.74 → ~0.50 on its own with the colour.
2. **Colour** — the painted face's low frequencies in CIELAB (Gaussian σ = 8 px of the 256² crop, about an
   eye's width) are replaced by the photo's: skin lightness and hue, hair colour and the light on the face
   come from the sitter; strokes, hatching and texture stay the GAN's. Cheek ΔE to the photo 21–26 → ~2.
   On paper media the white paper around the head is left alone, so it stays paper.
3. **Structure** — a share of the photo's mid frequencies (σ 2–8 px: the shapes of eyelids, lips, the jaw
   line) is added to the lightness. Safe only after step 1 has made the two faces agree; without the warp
   it ghosts edges. 0.5 took the median distance from ~0.48 to ~0.44; stronger reads as a photograph.

What stays the GAN's: everything finer than 2 px — the brush or pencil texture — and the medium's way of
drawing eyes, lips and hair. That is why the result still reads as a painting of the sitter, not as the photo
with a texture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from services.worker.engine import compose
from services.worker.engine.align import gaussian_blur
from services.worker.engine.colour import lab_to_srgb, srgb_to_lab


@dataclass(frozen=True)
class LikenessSettings:
    """How strongly the sitter is carried into the painted face (see the module docstring)."""

    colour_sigma: float = 8.0  # px of the 256² crop: below this scale the colour is the photo's
    structure_band: tuple[float, float] = (2.0, 8.0)  # px: the photo's mid frequencies …
    structure_weight: float = 0.5  # … added at this share to the painted lightness
    palette_keep: float = 0.0  # share of the painting's own low-frequency hue (a*, b*) kept: the medium's wash
    flow_passes: int = 2
    flow_sigma: float = 2.0  # the lightness the flow sees is blurred this much, so strokes do not pull it


DEFAULT = LikenessSettings()
# Watercolour's charm is its wash: a third of the ink GAN's own hue stays in the face, and less of the photo's
# mid-frequency structure, so it reads less like a soft photograph. On the study's crops: median distance 0.37
# → 0.44 (still 6 of 6), cheek ΔE 1.9 → 2.3 (#21).
WASH = LikenessSettings(structure_weight=0.35, palette_keep=0.3)
# Cheek patches in the aligned 256² crop (template eyes at y≈120, nose tip y≈161, mouth y≈186): below the
# eyes, beside the nose. Where the likeness study and the tests read a sitter's complexion.
CHEEKS = ((slice(146, 166), slice(88, 108)), (slice(146, 166), slice(150, 170)))


def cheek_lab(crops: torch.Tensor) -> torch.Tensor:
    """N×3×256×256 aligned crops in 0..1 → N×3: the mean L*a*b* of the two cheek patches."""
    lab = srgb_to_lab(crops.float())
    return torch.stack([lab[:, :, rows, cols].mean((2, 3)) for rows, cols in CHEEKS]).mean(0)


@dataclass(frozen=True)
class Sitter:
    """What the photos give the likeness steps, read once per batch: each flow pass and each carry uses the same."""

    low: torch.Tensor  # N×3×H×W: the photos' L*a*b* below `colour_sigma`
    band: torch.Tensor  # N×1×H×W: their lightness between the structure band's two scales
    lightness: np.ndarray  # N×H×W uint8: their lightness as the flow sees it (blurred `flow_sigma`)

    @classmethod
    def of(cls, photos: torch.Tensor, settings: LikenessSettings = DEFAULT) -> Sitter:
        lab = srgb_to_lab(photos.float())
        return cls(
            low=gaussian_blur(lab, settings.colour_sigma),
            band=_band(lab[:, :1], settings.structure_band),
            lightness=_lightness_u8(lab[:, :1], settings.flow_sigma),
        )


def _band(lightness: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    fine, coarse = band
    return gaussian_blur(lightness, fine) - gaussian_blur(lightness, coarse)


def _lightness_u8(lightness: torch.Tensor, sigma: float) -> np.ndarray:
    blurred = gaussian_blur(lightness, sigma) / 100
    return (blurred[:, 0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def carry_colour(painted: torch.Tensor, sitter: Sitter, sigma: float, palette_keep: float = 0.0) -> torch.Tensor:
    """The painting's L*a*b* with its frequencies below `sigma` (the scale `sitter.low` was read at) replaced by
    the photo's — all but `palette_keep` of its hue (a*, b*), which stays the painting's."""
    painted_lab = srgb_to_lab(painted)
    painted_low, photo_low = gaussian_blur(painted_lab, sigma), sitter.low
    if palette_keep:
        photo_low = photo_low.clone()
        photo_low[:, 1:] += palette_keep * (painted_low[:, 1:] - photo_low[:, 1:])
    return lab_to_srgb(painted_lab - painted_low + photo_low)


def carry_structure(painted: torch.Tensor, sitter: Sitter, band: tuple[float, float], weight: float) -> torch.Tensor:
    """The painting with `weight` of the photo's lightness band (`sitter.band`, between σ `band[0]` and
    `band[1]`) added, in place of as much of its own."""
    painted_lab = srgb_to_lab(painted)
    painted_l = painted_lab[:, :1]
    lightness = painted_l + weight * (sitter.band - _band(painted_l, band))
    return lab_to_srgb(torch.cat([lightness, painted_lab[:, 1:]], 1))


def flow_to_sitter(painted: torch.Tensor, sitter: Sitter, guide: torch.Tensor, sigma: float) -> torch.Tensor:
    """N×H×W×2 displacements (pixels, x then y): where in the painting each pixel of the photo is.

    `guide` is the painting as the flow should see it (colour-matched to the photo, so that the two differ in
    shape rather than in tone), blurred `sigma` like `sitter.lightness`. DIS at its "medium" preset: "fast"
    halved the gain in likeness (#21).
    """
    guide_l = _lightness_u8(srgb_to_lab(guide.float())[:, :1], sigma)
    dis = cv2.DISOpticalFlow.create(cv2.DISOpticalFlow_PRESET_MEDIUM)
    # None asks for a fresh flow, as OpenCV documents; its stubs type the argument as an array only.
    flows = [dis.calc(sitter.lightness[i], guide_l[i], None) for i in range(len(guide_l))]  # type: ignore[call-overload]
    return torch.from_numpy(np.stack(flows)).to(painted.device, painted.dtype)


def warp(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `images` (N×C×H×W) at each pixel + `flow` (N×H×W×2, pixels)."""
    height, width = images.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=images.dtype, device=images.device),
        torch.arange(width, dtype=images.dtype, device=images.device),
        indexing="ij",
    )
    x = (xs + flow[..., 0] + 0.5) / width * 2 - 1
    y = (ys + flow[..., 1] + 0.5) / height * 2 - 1
    return F.grid_sample(images, torch.stack([x, y], -1), mode="bilinear", padding_mode="border", align_corners=False)


def bring_to_sitter(
    painted: torch.Tensor, photos: torch.Tensor, on_paper: Sequence[bool], settings: LikenessSettings = DEFAULT
) -> torch.Tensor:
    """Aligned painted faces N×3×256×256 → the same paintings in the sitter's shape and colour.

    `photos`: the aligned photo crops they were painted from. `on_paper`: per face, whether its medium paints on
    white paper; that paper, around the head, is left as the GAN painted it.
    """
    painted = painted.float()
    sitter = Sitter.of(photos.to(painted.device), settings)
    head = compose.head_ellipse(painted.shape[-1], painted.device)[:, 0, :, :, None]  # the flow moves the head only
    for _ in range(settings.flow_passes):
        guide = carry_colour(painted, sitter, settings.colour_sigma)
        painted = warp(painted, flow_to_sitter(painted, sitter, guide, settings.flow_sigma) * head)
    carried = carry_colour(painted, sitter, settings.colour_sigma, settings.palette_keep)
    carried = carry_structure(carried, sitter, settings.structure_band, settings.structure_weight)
    rows = [i for i, paper in enumerate(on_paper) if paper]
    if rows:
        paper = compose.paper_around_head(painted[rows])
        carried[rows] = paper * painted[rows] + (1 - paper) * carried[rows]
    return carried
