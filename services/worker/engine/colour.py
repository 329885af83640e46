"""sRGB ↔ CIELAB (D65) on N×3×H×W tensors, for colour that has to survive painting (#21).

The sitter's complexion is carried and measured in CIELAB because its distances are perceptual: a cheek's
ΔE (Euclidean distance in L*a*b*) is what the likeness targets are written in, L* is lightness as people see
it, and a* (green − / red +) is the axis on which the face GAN's green-yellow skin was wrong.
"""

from __future__ import annotations

import torch

# sRGB primaries → XYZ (D65), and the D65 white the XYZ values are divided by (IEC 61966-2-1, CIE 15).
_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883]).view(1, 3, 1, 1)
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27


def _mix(matrix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(images.device, images.dtype), images)


def srgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """N×3×H×W sRGB in 0..1 → N×3×H×W L* (0..100), a*, b*."""
    images = images.clamp(0, 1)
    linear = torch.where(images <= 0.04045, images / 12.92, ((images + 0.055) / 1.055) ** 2.4)
    xyz = _mix(_RGB_TO_XYZ, linear) / _WHITE.to(images.device, images.dtype)
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(1e-12) ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def lab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    """The inverse of `srgb_to_lab`, clipped to the sRGB gamut (0..1)."""
    lightness = lab[:, 0]
    fy = (lightness + 16) / 116
    fx, fz = fy + lab[:, 1] / 500, fy - lab[:, 2] / 200

    def finv(f: torch.Tensor) -> torch.Tensor:
        return torch.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA)

    y = torch.where(lightness > _KAPPA * _EPSILON, fy**3, lightness / _KAPPA)
    xyz = torch.stack([finv(fx), y, finv(fz)], 1) * _WHITE.to(lab.device, lab.dtype)
    linear = _mix(_XYZ_TO_RGB, xyz).clamp(0, 1)
    srgb: torch.Tensor = torch.where(
        linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055
    )
    return srgb
