"""Face alignment for the face stylizer: five MTCNN landmarks → the 256² crop it was trained on, and back.

The stylizer expects MediaPipe's aligned face crop. We fit, per face, the similarity transform (rotation,
uniform scale, translation; least squares, Umeyama 1991) that carries the face's five landmarks onto
`TEMPLATE` — where those landmarks sit, on average, in MediaPipe's own aligned crops — and warp every face of a
batch in one `grid_sample`. `paste` is the inverse: one warp that puts painted faces back into their portraits.

Coordinates are continuous pixels (pixel (i, j) covers [j, j+1) × [i, i+1)), as in `detect.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from services.worker.engine.detect import FaceBox

CROP_SIDE = 256
# Left eye, right eye, nose, mouth left, mouth right in MediaPipe's aligned 256² crop: the mean of our MTCNN's
# landmarks found on MediaPipe FaceAligner crops of the three test faces (spread 3.2 px RMS). MediaPipe aligns
# with an FFHQ-style similarity from its 478-point mesh; fitting our five points to this template lands within
# ±3 % scale, ±2° and 2 px of its crop (#8).
TEMPLATE = np.array(
    [
        [94.61, 120.01],
        [162.32, 120.32],
        [130.97, 161.52],
        [96.75, 185.80],
        [157.63, 185.30],
    ],
    dtype=np.float64,
)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2×3 similarity matrix M minimising Σ‖M·[s, 1] − t‖² (Umeyama, without reflection)."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    src, dst = source - source_mean, target - target_mean
    covariance = dst.T @ src / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign) / src.var(0).sum())
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - matrix[:, :2] @ source_mean
    return matrix


def invert(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear, -(linear @ matrix[:, 2:])], axis=1)


def alignment(face: FaceBox) -> np.ndarray:
    """portrait → crop: the 2×3 matrix taking this face's landmarks to the template."""
    return similarity(np.asarray(face.landmarks, dtype=np.float64), TEMPLATE)


def _theta(to_source: np.ndarray, source_hw: tuple[int, int], target_hw: tuple[int, int]) -> torch.Tensor:
    """`affine_grid`'s theta for a pixel-space map target → source (align_corners=False normalisation)."""
    (sh, sw), (th, tw) = source_hw, target_hw
    normalise_source = np.array([[2 / sw, 0, -1], [0, 2 / sh, -1], [0, 0, 1]])
    pixels_of_target = np.array([[tw / 2, 0, tw / 2], [0, th / 2, th / 2], [0, 0, 1]])
    full = normalise_source @ np.vstack([to_source, [0, 0, 1]]) @ pixels_of_target
    return torch.from_numpy(full[:2]).float()


def warp(
    images: torch.Tensor, to_source: Sequence[np.ndarray], size: tuple[int, int], padding_mode: str
) -> torch.Tensor:
    """N×C×H×W → N×C×size: each output pixel sampled where its 2×3 output → input matrix sends it (one batch)."""
    thetas = torch.stack([_theta(m, (images.shape[-2], images.shape[-1]), size) for m in to_source]).to(images.device)
    grid = F.affine_grid(thetas.to(images.dtype), [images.shape[0], images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def crop_faces(portraits: torch.Tensor, matrices: Sequence[np.ndarray]) -> torch.Tensor:
    """N×3×H×W portraits and their portrait→crop matrices → N×3×256×256 aligned faces.

    A face the crop reaches past the portrait's edge gets the edge pixels repeated, like MediaPipe's
    border handling, rather than black that the network would paint as a shadow.
    """
    scales = [float(np.sqrt(abs(np.linalg.det(m[:, :2])))) for m in matrices]
    smoothed = portraits
    if min(scales) < 0.5:  # shrinking more than 2×: low-pass first so bilinear sampling does not alias
        sigma = 0.5 / min(scales) - 0.5
        smoothed = gaussian_blur(portraits, sigma)
    return warp(smoothed, [invert(m) for m in matrices], (CROP_SIDE, CROP_SIDE), "border")


def paste(faces: torch.Tensor, matrices: Sequence[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """N×C×s×s crops (any side s, e.g. after super-resolution) → N×C×H×W in portrait space, zero outside."""
    side = faces.shape[-1]
    to_crop = [np.diag([side / CROP_SIDE, side / CROP_SIDE]) @ m for m in matrices]
    return warp(faces, to_crop, size, "zeros")


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    xs = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(xs**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    padded = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    images = F.conv2d(padded, horizontal, groups=channels)
    padded = F.pad(images, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(padded, vertical, groups=channels)
