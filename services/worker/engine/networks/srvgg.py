"""SRVGGNetCompact (Real-ESRGAN's "realesr-animevideov3" super-resolution net), built from ncnn model files.

The network (Wang et al., Real-ESRGAN, BSD-3): conv3x3(3→64) + PReLU, `num_conv` × (conv3x3 64→64 +
PReLU), conv3x3(64→3·r²), PixelShuffle(r), plus the nearest-upsampled input (the net learns a residual
over it). Module and parameter names mirror Real-ESRGAN's own `SRVGGNetCompact` (`body.0.weight`, ...),
so its PyTorch state dicts would load too.

The ncnn files ship one network at r = 4: the "x2" and "x3" files hold the same weights as "x4" and end
with an extra bicubic Interp (scale 0.5 / 0.75). So `scale` 2 or 3 costs a full x4 pass plus a bicubic
downscale; we reproduce that exactly (PyTorch's bicubic, a = -0.75 and half-pixel centres, is ncnn's).

Input: N×3×H×W RGB in 0..1 (Real-ESRGAN's runner divides 8-bit pixels by 255); output N×3×(sH)×(sW) in
about 0..1, deliberately not clamped: the runner multiplies by 255, rounds and clamps to 0..255, and
callers choose where to do that. The runner also reflect-pads every tile by 10 px (the image border
included) and crops the result; without that padding the outermost few pixels see zero padding instead.

Speed: ~80 GFLOP per 256×256 input. On a CPU put module and input in channels_last (oneDNN): about
0.42 s instead of 0.73 s per 256 px image on two cores. Every op also runs in fp16 / channels_last on CUDA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine.ncnn_weights import LayerWeights, NcnnLayer, NcnnParam, build_module

PathLike = str | Path

# ncnn Interp resize_type values
_NEAREST, _BICUBIC = 1, 3


class SRVGGNetCompact(nn.Module):
    def __init__(self, num_feat: int = 64, num_conv: int = 16, upscale: int = 4, scale: int | None = None) -> None:
        """`upscale`: the PixelShuffle factor of the net; `scale`: the output scale after the optional
        bicubic resize (defaults to `upscale`)."""
        super().__init__()
        self.upscale = upscale
        self.scale = upscale if scale is None else scale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * upscale * upscale, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) RGB in 0..1 → (N, 3, scale·H, scale·W), not clamped."""
        out: torch.Tensor = self.upsampler(self.body(x))
        out = out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        if self.scale != self.upscale:
            size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
            out = F.interpolate(out, size=size, mode="bicubic", align_corners=False)
        return out

    @classmethod
    def from_ncnn(cls, param_path: PathLike, bin_path: PathLike) -> SRVGGNetCompact:
        """Build from a realesr-animevideov3 `.param` (structure checked) and load its `.bin` weights."""
        return build_module(param_path, bin_path, _build, "SRVGGNetCompact")


def _build(param: NcnnParam, weights: LayerWeights) -> tuple[SRVGGNetCompact, dict[str, torch.Tensor]]:
    # ncnn's Split only fans a blob out under new names: map each copy back to its source blob.
    alias: dict[str, str] = {}
    for layer in param.layers:
        if layer.type == "Split":
            alias.update({out: alias.get(layer.inputs[0], layer.inputs[0]) for out in layer.outputs})

    def source(layer: NcnnLayer, i: int = 0) -> str:
        return alias.get(layer.inputs[i], layer.inputs[i])

    inputs = param.of_type("Input")
    if len(inputs) != 1:
        raise ValueError(f"expected one Input layer, found {len(inputs)}")
    data = inputs[0].outputs[0]
    ops = [layer for layer in param.layers if layer.type not in ("Input", "Split")]
    types = [layer.type for layer in ops]
    n_convs = types.count("Convolution")
    head = ["Convolution", "PReLU"] * (n_convs - 1) + ["Convolution", "PixelShuffle", "Interp", "BinaryOp"]
    if types not in (head, head + ["Interp"]) or n_convs < 2:
        raise ValueError(f"unexpected layer sequence {types}")

    # The body is a plain chain from the input blob; each conv is 3x3, stride 1, pad 1, with bias.
    state: dict[str, torch.Tensor] = {}
    previous, channels = data, 3
    for i, layer in enumerate(ops[: 2 * n_convs - 1]):
        if source(layer) != previous:
            raise ValueError(f"layer {layer.name} does not follow the previous one")
        arrays = weights[layer.name]
        if layer.type == "Convolution":
            out_ch = layer.get_int(0)
            if not _plain_conv3x3(layer):
                raise ValueError(f"conv {layer.name} is not a plain 3x3/stride 1/pad 1 conv with bias")
            state[f"body.{i}.weight"] = _tensor(arrays[0], (out_ch, channels, 3, 3), layer.name)
            state[f"body.{i}.bias"] = _tensor(arrays[1], (out_ch,), layer.name)
            channels = out_ch
        else:  # PReLU: one slope per channel
            state[f"body.{i}.weight"] = _tensor(arrays[0], (channels,), layer.name)
        previous = layer.outputs[0]

    shuffle, nearest, add = ops[2 * n_convs - 1 : 2 * n_convs + 2]
    upscale = shuffle.get_int(0)
    if source(shuffle) != previous or shuffle.get_int(1) != 0 or channels != 3 * upscale * upscale:
        raise ValueError(f"PixelShuffle {shuffle.name} does not turn {channels} channels into RGB")
    if (
        source(nearest) != data
        or nearest.get_int(0) != _NEAREST
        or (nearest.get_float(1), nearest.get_float(2)) != (upscale, upscale)
    ):
        raise ValueError(f"Interp {nearest.name} is not a x{upscale} nearest upsampling of the input")
    if {source(add, 0), source(add, 1)} != {shuffle.outputs[0], nearest.outputs[0]} or add.get_int(0) != 0:
        raise ValueError(f"BinaryOp {add.name} is not the residual add")
    scale = upscale
    if len(ops) == 2 * n_convs + 3:  # the x2/x3 files: a bicubic resize of the x4 result
        resize = ops[-1]
        factor = resize.get_float(1)
        scale = round(upscale * factor)
        if (
            source(resize) != add.outputs[0]
            or resize.get_int(0) != _BICUBIC
            or resize.get_float(2) != factor
            or resize.get_int(6)
            or abs(upscale * factor - scale) > 1e-6
        ):
            raise ValueError(f"Interp {resize.name} is not a bicubic resize to an integer scale")
    num_feat = state["body.0.bias"].numel()
    return SRVGGNetCompact(num_feat=num_feat, num_conv=n_convs - 2, upscale=upscale, scale=scale), state


def _plain_conv3x3(layer: NcnnLayer) -> bool:
    """3x3 kernel, stride 1, dilation 1, padding 1 on every side, bias, no fused activation."""
    k = layer.get_int(1)
    pad = layer.get_int(4)
    return (
        (k, layer.get_int(11, k), layer.get_int(2, 1), layer.get_int(3, 1), layer.get_int(13, 1)) == (3, 3, 1, 1, 1)
        and (pad, layer.get_int(14, pad), layer.get_int(15, pad), layer.get_int(16, pad)) == (1, 1, 1, 1)
        and layer.get_int(5) == 1
        and layer.get_int(9) == 0
    )


def _tensor(array: np.ndarray, shape: tuple[int, ...], name: str) -> torch.Tensor:
    if array.size != int(np.prod(shape)):
        raise ValueError(f"layer {name}: {array.size} values do not make shape {shape}")
    return torch.from_numpy(array.reshape(shape).copy())
