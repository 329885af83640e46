"""BlazeStyleGAN: W+ latents (12 × 512) → a painted 256² face, and the whole BlazeFaceStylizer, our torch code.

BlazeStyleGAN (Jia et al., 2023) is a StyleGAN distilled for phones; MediaPipe fine-tuned one generator per
painting medium. Read off `face_stylizer.tflite` (#8), the generator is:

* a learned 4×4×512 constant;
* per resolution 8² … 256²: nearest ×2, a depthwise 3×3 (+bias) and leaky ReLU, a 1×1 down-projection, then
  *styled convs*: the activations are scaled per channel by a dense layer of one W+ slot ("modulation", with
  an equalised-learning-rate gain, no demodulation), a grouped 3×3 conv, a 1×1 conv, a noise injection, a bias
  and a leaky ReLU;
* at 256² a plain 3×3 conv, one last styled 1×1 conv to RGB, tanh, then (x + 1) / 2.

The noise injections add N(0, 1)·strength per pixel; the strengths are tiny (≤ 0.007, about 0.1/255 at the
output) and we leave them out so the same photo always paints the same (#8).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine.networks.face_encoder import FaceEncoder
from services.worker.engine.networks.tf_layers import TfConv, as_tensor, dense, leaky_alpha, scalar
from services.worker.engine.tflite_weights import Op, TfliteGraph

LATENT_SLOTS = 12
FACE_SIDE = 256


class Modulation(nn.Module):
    """One W+ slot → a per-channel scale: dense(w[slot]) × gain."""

    def __init__(self, slot: int, fc: nn.Linear, gain: float) -> None:
        super().__init__()
        self.slot, self.fc, self.gain = slot, fc, gain

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        scale: torch.Tensor = self.fc(latents[:, self.slot])
        return (scale * self.gain)[:, :, None, None]

    @classmethod
    def load(cls, graph: TfliteGraph, style: int, latents: int) -> Modulation:
        gain_op = graph.made_by(style, "MUL")
        reshape = graph.made_by(gain_op.inputs[0], "RESHAPE")
        fc_op = graph.made_by(reshape.inputs[0], "FULLY_CONNECTED")
        slot_op = graph.made_by(graph.made_by(fc_op.inputs[0], "RESHAPE").inputs[0], "SLICE")
        if slot_op.inputs[0] != latents:
            raise graph.mismatch(slot_op, "the modulation does not read the encoder's W+ latents")
        return cls(int(graph.weight(slot_op, 1)[1]), dense(graph, fc_op), scalar(graph, gain_op, 1))


class StyledConv(nn.Module):
    """Modulate, grouped conv, 1×1 conv, (noise), bias, leaky ReLU — or, for the RGB layer, no bias/activation."""

    def __init__(
        self, modulation: Modulation, grouped: TfConv, pointwise: TfConv, bias: torch.Tensor | None, alpha: float | None
    ) -> None:
        super().__init__()
        self.modulation, self.grouped, self.pointwise = modulation, grouped, pointwise
        self.bias = None if bias is None else nn.Parameter(bias.view(1, -1, 1, 1), requires_grad=False)
        self.alpha = alpha

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(self.grouped(x * self.modulation(latents).to(x.dtype)))
        if self.bias is not None:
            x = x.add_(self.bias.to(x.dtype))
        # In place throughout: at 256² a fresh activation costs more than the op itself (#8 benchmark).
        return x if self.alpha is None else F.leaky_relu_(x, self.alpha)

    @classmethod
    def load(cls, graph: TfliteGraph, x: int, latents: int) -> tuple[StyledConv, int]:
        mul = graph.follow(x, "MUL")
        modulation = Modulation.load(graph, graph.other_input(mul, x), latents)
        grouped_op = graph.follow(mul.out, "CONV_2D")
        pointwise_op = graph.follow(grouped_op.out, "CONV_2D")
        out, bias, alpha = pointwise_op.out, None, None
        noise = [op for op in graph.consumers(out) if op.kind == "ADD" and _is_noise(graph, op, out)]
        if noise:  # left out: see the module docstring
            out = noise[0].out
            bias_op = graph.follow(out, "ADD")
            bias = as_tensor(graph.weight(bias_op, 1)).flatten()
            act = graph.follow(bias_op.out, "LEAKY_RELU")
            out, alpha = act.out, leaky_alpha(graph, act)
        return cls(modulation, TfConv.from_op(graph, grouped_op), TfConv.from_op(graph, pointwise_op), bias, alpha), out


def _is_noise(graph: TfliteGraph, add: Op, tensor: int) -> bool:
    scaled = graph.producer(graph.other_input(add, tensor))
    if scaled is None or scaled.kind != "MUL":
        return False
    return any((graph.producer(t) or scaled).kind == "RANDOM_STANDARD_NORMAL" for t in scaled.inputs)


class Upsample(nn.Module):
    """Nearest ×2 (TF's half-pixel nearest at ×2 picks the same pixels as torch's), then plain layers.

    Tried and dropped: computing the depthwise 3×3 that follows as four phase kernels at the low resolution
    plus a pixel shuffle (exact, no upsampled activation) — oneDNN's depth-multiplier-4 conv made the
    generator slower on the CPU (125 → 147 ms).
    """

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return out


class LeakyReLU(nn.Module):
    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(x, self.alpha)  # only ever applied to a conv's fresh output


class StyleGenerator(nn.Module):
    """W+ latents N×12×512 → N×3×256×256 in 0..1."""

    constant: torch.Tensor

    def __init__(self, constant: torch.Tensor, stages: list[nn.Module]) -> None:
        super().__init__()
        self.register_buffer("constant", constant)
        self.stages = nn.ModuleList(stages)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.constant.to(latents.dtype).repeat(latents.shape[0], 1, 1, 1)
        for stage in self.stages:
            x = stage(x, latents) if isinstance(stage, StyledConv) else stage(x)
        return (torch.tanh(x) + 1) * 0.5

    @classmethod
    def from_graph(cls, graph: TfliteGraph, latents: int) -> StyleGenerator:
        tiles = [op for op in graph.ops if op.kind == "TILE" and graph.const(op.inputs[0]) is not None]
        if len(tiles) != 1:
            raise graph.mismatch(graph.ops[-1], f"expected one constant input (TILE), found {len(tiles)}")
        constant = as_tensor(graph.weight(tiles[0], 0)).permute(0, 3, 1, 2).contiguous()
        x = tiles[0].out
        stages: list[nn.Module] = []
        while True:
            kinds = {op.kind for op in graph.consumers(x)} - {"SHAPE"}
            if kinds == {"MUL"}:
                styled, x = StyledConv.load(graph, x, latents)
                stages.append(styled)
            elif kinds == {"RESIZE_NEAREST_NEIGHBOR"}:
                upsample, x = cls._load_upsample(graph, graph.follow(x, "RESIZE_NEAREST_NEIGHBOR"))
                stages.append(upsample)
            elif kinds == {"TANH"}:
                break
            else:
                raise graph.mismatch(graph.consumers(x)[0], f"unexpected ops after a generator stage: {kinds}")
        cls._check_output(graph, graph.follow(x, "TANH"))
        return cls(constant, stages)

    @staticmethod
    def _load_upsample(graph: TfliteGraph, resize: Op) -> tuple[Upsample, int]:
        if graph.shape(resize.out)[1] != 2 * graph.shape(resize.inputs[0])[1]:
            raise graph.mismatch(resize, "expected a ×2 upsampling")
        layers: list[nn.Module] = []
        x = resize.out
        while True:
            consumers = [op for op in graph.consumers(x) if op.kind != "SHAPE"]
            if len(consumers) != 1 or consumers[0].kind not in ("DEPTHWISE_CONV_2D", "CONV_2D", "LEAKY_RELU"):
                break  # the next styled conv (a MUL) starts here
            op = consumers[0]
            layers.append(LeakyReLU(leaky_alpha(graph, op)) if op.kind == "LEAKY_RELU" else TfConv.from_op(graph, op))
            x = op.out
        return Upsample(layers), x

    @staticmethod
    def _check_output(graph: TfliteGraph, tanh: Op) -> None:
        add = graph.follow(tanh.out, "ADD")
        mul = graph.follow(add.out, "MUL")
        if scalar(graph, add, 1) != 1.0 or scalar(graph, mul, 1) != 0.5 or mul.out != graph.output:
            raise graph.mismatch(mul, "expected the output to be (tanh + 1) × 0.5")


class FaceStylizer(nn.Module):
    """The whole BlazeFaceStylizer: aligned faces N×3×256×256 in 0..1 → painted faces in 0..1."""

    def __init__(self, encoder: FaceEncoder, generator: StyleGenerator) -> None:
        super().__init__()
        self.encoder, self.generator = encoder, generator

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        """N×3×256×256 in 0..1 → W+ latents N×12×512 (the network's input range is [-1, 1])."""
        latents: torch.Tensor = self.encoder(faces * 2 - 1)
        return latents

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        painted: torch.Tensor = self.generator(self.encode(faces))
        return painted

    @classmethod
    def from_graph(cls, graph: TfliteGraph) -> FaceStylizer:
        if graph.shape(graph.input) != (1, FACE_SIDE, FACE_SIDE, 3):
            raise graph.mismatch(graph.ops[0], f"unexpected input shape {graph.shape(graph.input)}")
        encoder, latents = FaceEncoder.from_graph(graph)
        if graph.shape(latents)[1:] != (LATENT_SLOTS, 512):
            raise graph.mismatch(graph.producer(latents) or graph.ops[0], "unexpected W+ shape")
        return cls(encoder, StyleGenerator.from_graph(graph, latents)).eval()
