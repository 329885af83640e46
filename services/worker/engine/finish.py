"""Stage 6 — finish: keep the eyes and mouth readable, then encode with no metadata at all.

Style networks paint over the small features that make a face someone's face. We blend a little of the
photo's luminance — its shading and fine edges — back in, only around the eyes and mouth, under soft
elliptical masks placed from the landmarks. Colour stays the painting's.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from services.worker.engine.detect import FaceBox
from services.worker.engine.tensors import to_image

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def feature_mask(face: FaceBox, height: int, width: int) -> torch.Tensor:
    """H×W in 0..1: soft ellipses over both eyes and the mouth, sized from the face box."""
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, -1)
    left_eye, right_eye, _nose, mouth_left, mouth_right = face.landmarks
    eye_rx, eye_ry = face.width * 0.16, face.height * 0.09
    mouth_cx, mouth_cy = (mouth_left[0] + mouth_right[0]) / 2, (mouth_left[1] + mouth_right[1]) / 2
    mouth_rx = max(abs(mouth_right[0] - mouth_left[0]) * 0.75, face.width * 0.15)
    mouth_ry = face.height * 0.09
    mask = torch.zeros(height, width)
    for cx, cy, rx, ry in (
        (*left_eye, eye_rx, eye_ry),
        (*right_eye, eye_rx, eye_ry),
        (mouth_cx, mouth_cy, mouth_rx, mouth_ry),
    ):
        distance = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2
        mask = torch.maximum(mask, torch.exp(-distance))  # Gaussian falloff: no visible seams
    return mask


def detail_blend(
    painted: torch.Tensor, photos: torch.Tensor, faces: Sequence[FaceBox], amounts: Sequence[float]
) -> torch.Tensor:
    """painted, photos: N×3×H×W in 0..1. Returns the painted batch with the features' shading restored."""
    height, width = painted.shape[-2:]
    masks = torch.stack([feature_mask(face, height, width) for face in faces]).unsqueeze(1)
    amount = torch.tensor(list(amounts), dtype=torch.float32).view(-1, 1, 1, 1)
    luma_painted = (painted * _LUMA).sum(1, keepdim=True)
    luma_photo = (photos * _LUMA).sum(1, keepdim=True)
    fine_edges = luma_photo - F.avg_pool2d(luma_photo, 5, stride=1, padding=2, count_include_pad=False)
    # Pull the painting's luminance towards the photo's and sharpen with the photo's own edges.
    correction = (luma_photo - luma_painted) * 0.6 + fine_edges * 0.8
    return (painted + masks * amount * correction).clamp(0, 1)


def encode(portrait: torch.Tensor, *, image_format: str, quality: int) -> bytes:
    """3×H×W in 0..1 → JPEG/WebP bytes. Saved without exif/icc/xmp arguments, so Pillow writes none."""
    buffer = io.BytesIO()
    options = {"quality": quality}
    if image_format == "jpeg":
        options.update(optimize=True, progressive=True)
    else:
        options.update(method=4)
    to_image(portrait).save(buffer, format=image_format.upper(), **options)
    return buffer.getvalue()
