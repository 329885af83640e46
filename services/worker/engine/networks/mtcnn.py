"""The three MTCNN networks (Zhang et al. 2016), shaped to load facenet-pytorch 2.6.0's weights (MIT).

Attribute names and shapes mirror those state dicts exactly so `load_state_dict(strict=True)` works. The
weights were converted from the original Caffe models, whose dense layers flatten feature maps in (W, H, C)
order; R-Net and O-Net therefore permute NCHW → NWHC before flattening, or the dense layers would read
scrambled features.

Every network expects RGB input normalised as `(pixel - 127.5) / 128`. Outputs: bounding-box regression
offsets (fractions of the box size), face probability (softmax over {background, face}, channel 1 = face)
and, for O-Net, five landmarks as fractions of the box (x1..x5, then y1..y5).
"""

from __future__ import annotations

import torch
from torch import nn


class PNet(nn.Module):
    """Proposal net: fully convolutional, scores every 12×12 window (stride 2) of a pyramid level."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        # ceil_mode matches Caffe pooling, so output maps line up with the 2-pixel window stride.
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, H, W) → regression (N, 4, H', W'), face probability (N, H', W')."""
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        probs = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return self.conv4_2(x), probs


class RNet(nn.Module):
    """Refinement net: re-scores 24×24 crops of P-Net proposals and refines their boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)  # 64 channels × 3 × 3
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, 24, 24) → regression (N, 4), face probability (N,)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = _flatten_caffe_order(x)
        x = self.prelu4(self.dense4(x))
        probs = torch.softmax(self.dense5_1(x), dim=1)[:, 1]
        return self.dense5_2(x), probs


class ONet(nn.Module):
    """Output net: final score, box refinement and five facial landmarks from 48×48 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)  # 128 channels × 3 × 3
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, 3, 48, 48) → regression (N, 4), landmarks (N, 10), face probability (N,)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = _flatten_caffe_order(x)
        x = self.prelu5(self.dense5(x))
        probs = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return self.dense6_2(x), self.dense6_3(x), probs


def _flatten_caffe_order(x: torch.Tensor) -> torch.Tensor:
    # The converted dense weights index features as (W, H, C), not PyTorch's (C, H, W).
    return x.permute(0, 3, 2, 1).flatten(1)
