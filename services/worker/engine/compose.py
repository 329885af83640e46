"""Composition: a GAN-painted face put back into a 4:5 portrait whose rest is painted to match it (#8).

The face GAN paints only a 256² crop. The portrait around it — hair edge, shoulders, background — is painted
by the arbitrary-style network *with the painted face as its style image*, so brushwork and palette come from
the same painting, then its colours are pulled towards the face's. The painted face goes back in through the
inverse of the alignment warp under a feathered mask that follows the head: an ellipse in crop coordinates
(every crop is aligned, so one ellipse fits every face) minus, for media that paint on white paper, the paper
around the head — otherwise the crop's white background shows as a rectangle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from services.worker.engine import align

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
# The head in the aligned crop (template eyes at y≈118, mouth at y≈182): centre and radii in crop pixels,
# and the width of the feathered edge. Chosen on contact sheets of every test face and medium.
HEAD_CENTRE = (128.0, 135.0)
HEAD_RADII = (90.0, 112.0)
FEATHER = 16.0
PAPER_LUMA, PAPER_CHROMA = 0.82, 0.12  # "white paper": bright and nearly colourless
_PAPER_GRID = 64  # the flood fill runs on a 64² grid: cheap, and the mask is feathered anyway


def head_ellipse(side: int = align.CROP_SIDE, device: torch.device | None = None) -> torch.Tensor:
    """1×1×side×side in 0..1: 1 inside the head ellipse, a smooth ramp of about `FEATHER` px at its edge."""
    scale = side / align.CROP_SIDE
    ys = (torch.arange(side, dtype=torch.float32, device=device).view(-1, 1) + 0.5) / scale
    xs = (torch.arange(side, dtype=torch.float32, device=device).view(1, -1) + 0.5) / scale
    radius = torch.sqrt(((xs - HEAD_CENTRE[0]) / HEAD_RADII[0]) ** 2 + ((ys - HEAD_CENTRE[1]) / HEAD_RADII[1]) ** 2)
    inside_px = (1 - radius) * min(HEAD_RADII)  # ≈ distance inside the edge, in crop pixels
    return torch.sigmoid(inside_px * (6 / FEATHER)).view(1, 1, side, side)


def paper_around_head(painted: torch.Tensor) -> torch.Tensor:
    """N×1×256×256 in 0..1: the near-white paper connected to the crop's border (not the face's highlights)."""
    small = F.interpolate(painted.float(), size=(_PAPER_GRID, _PAPER_GRID), mode="area")
    luma = (small * _LUMA.to(small.device)).sum(1, keepdim=True)
    chroma = small.amax(1, keepdim=True) - small.amin(1, keepdim=True)
    paper = ((luma > PAPER_LUMA) & (chroma < PAPER_CHROMA)).float()
    reached = torch.zeros_like(paper)
    reached[..., 0, :] = reached[..., -1, :] = 1
    reached[..., :, 0] = reached[..., :, -1] = 1
    reached *= paper
    for _ in range(_PAPER_GRID * 2):  # flood fill from the border through paper pixels
        grown = F.max_pool2d(reached, 3, 1, 1) * paper
        if torch.equal(grown, reached):
            break
        reached = grown
    reached = F.avg_pool2d(reached, 3, 1, 1, count_include_pad=False)  # soften before upsampling
    return F.interpolate(reached, size=painted.shape[-2:], mode="bilinear", align_corners=False)


def head_masks(painted: torch.Tensor, paper: Sequence[bool]) -> torch.Tensor:
    """N×1×256×256: where the painted face replaces the portrait."""
    masks = head_ellipse(painted.shape[-1], painted.device).expand(painted.shape[0], 1, -1, -1).clone()
    rows = [i for i, on_paper in enumerate(paper) if on_paper]
    if rows:
        masks[rows] *= 1 - paper_around_head(painted[rows])
    return masks


def match_palette(
    background: torch.Tensor, painted: torch.Tensor, masks: torch.Tensor, amount: float | Sequence[float] = 0.5
) -> torch.Tensor:
    """Move each background's per-channel mean and spread `amount` (per image or one for all) of the way to
    the painted head's."""
    weights = masks / masks.sum((2, 3), keepdim=True).clamp_min(1e-6)
    head_mean = (painted * weights).sum((2, 3), keepdim=True)
    head_std = (((painted - head_mean) ** 2) * weights).sum((2, 3), keepdim=True).sqrt()
    mean = background.mean((2, 3), keepdim=True)
    std = background.std((2, 3), keepdim=True).clamp_min(1e-4)
    matched = (background - mean) / std * head_std + head_mean
    amounts = torch.tensor(
        [amount] * len(background) if isinstance(amount, float) else list(amount), dtype=background.dtype
    ).view(-1, 1, 1, 1)
    return (background + amounts * (matched - background)).clamp(0, 1)


# An umber ramp from near-black through burnt umber and ochre to warm cream, indexed by luminance: the palette of
# a Dutch or Flemish portrait. The oil GAN paints in a post-impressionist palette (green-yellow skin, cobalt
# grounds); graded onto this ramp with a dark vignette the same brushwork reads as an old-master portrait (#8).
UMBER_RAMP = torch.tensor([[0.06, 0.04, 0.025], [0.36, 0.22, 0.11], [0.72, 0.55, 0.32], [0.95, 0.88, 0.70]])
GRADE_AMOUNT, VIGNETTE = 0.75, 0.45
# On the sitter's face the ramp may only warm the skin, not replace it: at 0.75 it moved the study's cheeks by a
# median ΔE of 14 (a* down 16 on pink skin) against a target of 12; at this share the face keeps its complexion
# under the same umber light (#21).
FACE_GRADE_AMOUNT = 0.25


def old_master_grade(images: torch.Tensor, faces: torch.Tensor | None = None) -> torch.Tensor:
    """N×3×H×W in 0..1 → the same pictures moved 75 % onto the umber ramp (`FACE_GRADE_AMOUNT` where the
    N×1×H×W `faces` mask is 1), darkened towards the corners."""
    luma = (images * _LUMA.to(images.device)).sum(1).clamp(0, 1)  # N×H×W
    position = luma * (len(UMBER_RAMP) - 1)
    lower = position.floor().clamp(max=len(UMBER_RAMP) - 2).long()
    fraction = (position - lower).unsqueeze(1)
    ramp = UMBER_RAMP.to(images.device)
    start, end = ramp[lower].permute(0, 3, 1, 2), ramp[lower + 1].permute(0, 3, 1, 2)
    amount = GRADE_AMOUNT if faces is None else GRADE_AMOUNT + (FACE_GRADE_AMOUNT - GRADE_AMOUNT) * faces
    graded = images + amount * (start + (end - start) * fraction - images)
    height, width = images.shape[-2:]
    ys = torch.linspace(-1, 1, height, device=images.device).view(-1, 1)
    xs = torch.linspace(-1, 1, width, device=images.device).view(1, -1)
    light = 1 - VIGNETTE * ((xs**2 + (ys + 0.15) ** 2) / 1.6).clamp(0, 1)  # lit from a little above centre
    return (graded * light).clamp(0, 1)


def composite(
    background: torch.Tensor, faces: torch.Tensor, masks: torch.Tensor, matrices: Sequence[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste faces (N×3×s×s, any s ≥ 256) under masks (N×1×256×256) into backgrounds (N×3×H×W); also returns
    the masks in portrait space."""
    size = (background.shape[-2], background.shape[-1])
    face_layer = align.paste(faces, matrices, size)
    mask_layer = align.paste(masks, matrices, size)
    return (mask_layer * face_layer + (1 - mask_layer) * background).clamp(0, 1), mask_layer
