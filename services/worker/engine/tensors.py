"""Conversions between PIL images and float tensors in 0..1 (channels first), used by every stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → 3×H×W float32 in 0..1."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def to_batch(images: Sequence[Image.Image]) -> torch.Tensor:
    """Same-sized RGB images → N×3×H×W float32 in 0..1."""
    return torch.stack([to_tensor(image) for image in images])


def to_uint8_hwc(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → H×W×3 uint8 (the face detector's input)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8))


def to_image(tensor: torch.Tensor) -> Image.Image:
    """3×H×W float in 0..1 → RGB PIL image (rounded, clipped)."""
    array = (tensor.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, mode="RGB")
