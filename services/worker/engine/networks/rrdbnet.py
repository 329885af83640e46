"""RRDBNet (ESRGAN's generator, as in Real-ESRGAN's "realesrgan-x4plus"), built from ncnn model files.

conv_first → `num_block` RRDBs (each three residual dense blocks of five 3x3 convs, LeakyReLU 0.2 after
the first four, outputs scaled by 0.2 before the residual adds) → conv_body + long skip → two
(nearest x2 upsample → conv → LeakyReLU) → conv_hr → LeakyReLU → conv_last. Parameter names mirror
Real-ESRGAN's `RRDBNet` (`body.0.rdb1.conv1.weight`, ...), so its PyTorch state dicts would load too.

About 16.7 M parameters and ~2.3 TFLOP per 256×256 input (x4plus, 23 blocks): a GPU network (tens of
seconds per image on a CPU). The "x4plus-anime" file is the same design with 6 blocks.

Input: N×3×H×W RGB in 0..1; output N×3×4H×4W in about 0..1, not clamped (see srvgg.py for the
reference runner's pre/post-processing: the same for both networks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine.ncnn_weights import LayerWeights, NcnnParam, build_module

PathLike = str | Path

_LEAKY = 2  # ncnn fused activation_type: LeakyReLU, slope in activation_params[0]
_SLOPE = 0.2
_RESIDUAL_SCALE = 0.2


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        # Dense connections: conv i sees the block input and every earlier conv's output.
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), _SLOPE))
        mixed: torch.Tensor = self.conv5(torch.cat(features, 1))
        return mixed * _RESIDUAL_SCALE + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refined: torch.Tensor = self.rdb3(self.rdb2(self.rdb1(x)))
        return refined * _RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    scale = 4

    def __init__(self, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) RGB in 0..1 → (N, 3, 4H, 4W), not clamped."""
        feat: torch.Tensor = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), _SLOPE)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), _SLOPE)
        out: torch.Tensor = self.conv_last(F.leaky_relu(self.conv_hr(feat), _SLOPE))
        return out

    def convs(self) -> list[tuple[str, nn.Conv2d, bool]]:
        """(name, conv, followed by LeakyReLU?) in execution order: the order of the ncnn file."""
        out: list[tuple[str, nn.Conv2d, bool]] = [("conv_first", self.conv_first, False)]
        for b, block in enumerate(self.body):
            for r in (1, 2, 3):
                rdb = getattr(block, f"rdb{r}")
                out += [(f"body.{b}.rdb{r}.conv{i}", getattr(rdb, f"conv{i}"), i < 5) for i in range(1, 6)]
        out.append(("conv_body", self.conv_body, False))
        out += [(name, getattr(self, name), True) for name in ("conv_up1", "conv_up2", "conv_hr")]
        out.append(("conv_last", self.conv_last, False))
        return out

    @classmethod
    def from_ncnn(cls, param_path: PathLike, bin_path: PathLike) -> RRDBNet:
        """Build from a realesrgan-x4plus(-anime) `.param` (structure checked) and load its `.bin` weights."""
        return build_module(param_path, bin_path, _build, "RRDBNet")


def _build(param: NcnnParam, weights: LayerWeights) -> tuple[RRDBNet, dict[str, torch.Tensor]]:
    convs = param.of_type("Convolution")
    adds = param.of_type("Eltwise")
    interps = param.of_type("Interp")
    if len(convs) < 2 or len(adds) % 4 or len(convs) != 15 * (len(adds) // 4) + 6:
        raise ValueError(f"{len(convs)} convs and {len(adds)} residual adds do not make RRDB blocks")
    # Every residual add is `0.2 * branch + 1.0 * skip` (ncnn Eltwise 0=sum with coefficients).
    if any(a.get_int(0) != 1 or a.get_array(1) != (_RESIDUAL_SCALE, 1.0) for a in adds):
        raise ValueError("a residual add is not 0.2·branch + skip")
    if len(interps) != 2 or any((i.get_int(0), i.get_float(1), i.get_float(2)) != (1, 2.0, 2.0) for i in interps):
        raise ValueError("expected two x2 nearest upsamplings (x4 only)")
    num_feat, num_grow_ch = convs[0].get_int(0), convs[1].get_int(0)
    net = RRDBNet(num_feat=num_feat, num_block=len(adds) // 4, num_grow_ch=num_grow_ch)

    # Convs come in the file in execution order; check each against ours before taking its weights.
    state: dict[str, torch.Tensor] = {}
    for layer, (name, conv, leaky) in zip(convs, net.convs()):
        out_ch, in_ch = conv.weight.shape[:2]
        fused = (layer.get_int(9), layer.get_array(10)) if leaky else (layer.get_int(9), ())
        if (
            (layer.get_int(0), layer.get_int(1), layer.get_int(3, 1), layer.get_int(4), layer.get_int(5))
            != (out_ch, 3, 1, 1, 1)
            or layer.get_int(6) != out_ch * in_ch * 9
            or fused != ((_LEAKY, (_SLOPE,)) if leaky else (0, ()))
        ):
            raise ValueError(f"conv {layer.name} does not match {name} ({in_ch}→{out_ch}, leaky={leaky})")
        weight, bias = weights[layer.name]
        state[f"{name}.weight"] = torch.from_numpy(np.array(weight.reshape(out_ch, in_ch, 3, 3)))
        state[f"{name}.bias"] = torch.from_numpy(np.array(bias))
    return net, state
