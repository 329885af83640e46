"""dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) as our torch code.

A 150² face chip → a 128-d descriptor; two photos of one person lie within ~0.6 of each other (Euclidean).
The architecture is `anet_type` of dlib's examples/dnn_face_recognition_ex.cpp — a ResNet-34 with halved
widths and a few blocks dropped:

* stem: 7×7 conv, stride 2, 32 channels (150 → 72), affine, ReLU, 3×3 max pool, stride 2 (→ 35);
* 14 residual blocks (conv 3×3, affine, ReLU, conv 3×3, affine, + shortcut, ReLU) at widths 32 (×3),
  64 (×4), 128 (×3), 256 (×3) and 256 (×1); the first block of each width after the first halves the size
  with a stride-2 first conv, and its shortcut is a 2×2 average pool, stride 2;
* the mean over positions, and a 256 → 128 linear layer without bias: the descriptor (not normalised).

Conventions that differ from torchvision's ResNet, all from dlib's layers (dlib/dnn/layers.h) and kept here:

* dlib's `con` pads by size/2 only at stride 1; its stride-2 convs and pools are unpadded. So a
  down block's conv and its shortcut's pool disagree on odd sizes (8 → 3 vs 4; 4 → 1 vs 2), and dlib's
  `add_prev` then zero-pads the smaller tensor — channels and positions — to the larger: the shortcut
  carries the extra row and column, and, where widths double, the extra channels get the conv path only.
* `affine` is a fixed per-channel scale and shift (the trained batch norms, frozen); we fold each into the
  conv before it, which is exact up to float rounding.
* The input is (pixel − mean)/256 with pixels 0..255 and the per-channel means stored in the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine.dlib_weights import (
    AddPrev,
    Affine,
    Conv,
    DlibFormatError,
    FullyConnected,
    InputRgbImage,
    Layer,
    LossMetric,
    Pool,
    Relu,
    Skip,
    Tag,
    load_network,
)

CHIP_SIDE = 150
DESCRIPTOR_SIZE = 128
# (width, halves the size) of each residual block, input to output: alevel4 … alevel0 of anet_type.
BLOCKS: tuple[tuple[int, bool], ...] = (
    *((32, False),) * 3,
    (64, True),
    *((64, False),) * 3,
    (128, True),
    *((128, False),) * 2,
    (256, True),
    *((256, False),) * 2,
    (256, True),
)


def _wrappers(down: bool) -> tuple[str, ...]:
    """One block as dlib's templates nest it, outermost first: `ares` / `ares_down` around `block`."""
    block = ("affine", "con", "relu", "affine", "con")
    if down:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<SUBNET>>>>>>>
        return ("relu", "add_prev2", "avg_pool", "skip1", "tag2", *block, "tag1")
    return ("relu", "add_prev1", *block, "tag1")  # relu<add_prev1<block<tag1<SUBNET>>>>


# anet_type, outermost first: loss_metric<fc_no_bias<avg_pool_everything<alevel0<…alevel4<max_pool<relu<
# affine<con<input_rgb_image_sized<150>>>>>>>>>>>>.
SPEC: tuple[str, ...] = (
    "loss_metric",
    "fc",
    "avg_pool",
    *(wrapper for _, down in reversed(BLOCKS) for wrapper in _wrappers(down)),
    "max_pool",
    "relu",
    "affine",
    "con",
    "input_rgb_image_sized",
)


def _folded(conv: Conv, affine: Affine) -> nn.Conv2d:
    """conv then per-channel x·gamma + beta, as one conv."""
    out_channels, in_channels, height, width = conv.weight.shape
    module = nn.Conv2d(in_channels, out_channels, (height, width), stride=conv.stride, padding=conv.padding)
    weight = conv.weight.astype(np.float64) * affine.gamma[:, None, None, None]
    bias = conv.bias.astype(np.float64) * affine.gamma + affine.beta
    assert module.bias is not None
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        module.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return module


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: a + b, each zero-padded (channels, bottom rows, right columns) to the larger size."""
    if a.shape == b.shape:
        return a + b
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1]))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    def __init__(self, first: nn.Conv2d, second: nn.Conv2d, down: bool) -> None:
        super().__init__()
        self.first, self.second, self.down = first, second, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.second(F.relu_(self.first(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu_(add_padded(h, shortcut))


class _Layers:
    """Walks the parsed layers in forward order, checking each is what the architecture has there."""

    def __init__(self, layers: list[Layer], source: str) -> None:
        self.layers, self.source, self.index = layers, source, 0

    def take(self, kind: type, why: str = "") -> Layer:
        if self.index >= len(self.layers):
            raise DlibFormatError(f"{self.source}: the network ends where {kind.__name__} was expected")
        layer = self.layers[self.index]
        if not isinstance(layer, kind):
            raise DlibFormatError(
                f"{self.source}: layer {self.index} is {type(layer).__name__}, expected {kind.__name__} {why}".rstrip()
            )
        self.index += 1
        return layer

    def check(self, ok: bool, why: str) -> None:
        if not ok:
            raise DlibFormatError(f"{self.source}: layer {self.index - 1} does not fit the architecture: {why}")

    def conv(self, in_channels: int, out_channels: int, size: int, stride: int) -> nn.Conv2d:
        conv = self.take(Conv)
        assert isinstance(conv, Conv)
        self.check(
            conv.weight.shape == (out_channels, in_channels, size, size) and conv.stride == (stride, stride),
            f"conv {conv.weight.shape} stride {conv.stride}, expected {(out_channels, in_channels, size, size)} "
            f"stride {stride}",
        )
        affine = self.take(Affine)
        assert isinstance(affine, Affine)
        self.check(
            affine.gamma.shape == (out_channels,), f"affine of {affine.gamma.shape} after {out_channels} filters"
        )
        return _folded(conv, affine)

    def pool(self, kind: str, size: int, stride: int) -> None:
        pool = self.take(Pool)
        assert isinstance(pool, Pool)
        self.check(
            (pool.kind, pool.size, pool.stride, pool.padding) == (kind, (size, size), (stride, stride), (0, 0)),
            f"{pool}, expected a {size}×{size} {kind} pool, stride {stride}, unpadded",
        )


class FaceRecognitionResNet(nn.Module):
    """N×3×150×150 RGB in 0..1 → N×128 descriptors."""

    mean: torch.Tensor  # 1×3×1×1: the file's per-channel pixel means (0..255)

    def __init__(self, mean: tuple[float, float, float], stem: nn.Conv2d, blocks: list[ResidualBlock], fc: nn.Linear):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem, self.blocks, self.fc = stem, nn.ModuleList(blocks), fc

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips * 255 - self.mean) / 256
        x = F.max_pool2d(F.relu_(self.stem(x)), 3, 2)
        for block in self.blocks:
            x = block(x)
        descriptors: torch.Tensor = self.fc(x.mean((2, 3)))
        return descriptors

    @classmethod
    def from_layers(cls, layers: list[Layer], *, source: str = "model") -> FaceRecognitionResNet:
        walk = _Layers(layers, source)
        given = walk.take(InputRgbImage)
        assert isinstance(given, InputRgbImage)
        walk.check((given.rows, given.cols) == (CHIP_SIDE, CHIP_SIDE), f"input {given.rows}×{given.cols}")
        stem = walk.conv(3, BLOCKS[0][0], 7, 2)
        walk.take(Relu)
        walk.pool("max", 3, 2)
        blocks, channels = [], BLOCKS[0][0]
        for width, down in BLOCKS:
            walk.take(Tag, "(tag1 before a block)")
            first = walk.conv(channels, width, 3, 2 if down else 1)
            walk.take(Relu)
            second = walk.conv(width, width, 3, 1)
            if down:
                walk.take(Tag)
                walk.take(Skip)
                walk.pool("avg", 2, 2)
            walk.take(AddPrev)
            walk.take(Relu)
            blocks.append(ResidualBlock(first, second, down))
            channels = width
        everything = walk.take(Pool)
        assert isinstance(everything, Pool)
        walk.check((everything.kind, everything.size) == ("avg", (0, 0)), "expected avg_pool_everything")
        dense = walk.take(FullyConnected)
        assert isinstance(dense, FullyConnected)
        walk.check(
            dense.weight.shape == (DESCRIPTOR_SIZE, channels) and dense.bias is None,
            f"fc {dense.weight.shape}, expected fc_no_bias {DESCRIPTOR_SIZE}×{channels}",
        )
        walk.take(LossMetric)
        walk.check(walk.index == len(layers), "layers after the loss")
        fc = nn.Linear(channels, DESCRIPTOR_SIZE, bias=False)
        with torch.no_grad():
            fc.weight.copy_(torch.from_numpy(dense.weight))
        return cls(given.mean, stem, blocks, fc).eval()

    @classmethod
    def from_file(cls, path: Path) -> FaceRecognitionResNet:
        return cls.from_layers(load_network(path, SPEC), source=path.name)
