"""BlazeFaceStylizer's face encoder: an aligned 256² face → its W+ latent (12 × 512), our torch code.

The architecture, read off MediaPipe's `face_stylizer.tflite` (#8):

* backbone — MobileNetV2 at width 2.0, cut after block 12 (16×16×192); its batch norms normalise each image by
  its own statistics (see `PerImageBatchNorm`);
* a context block at 16×16 — three depthwise branches dilated 4, 2 and 1, concatenated, fused, residual;
* a top-down feature pyramid — bilinear ×2, two depthwise-separable convs, plus a lateral depthwise-separable
  projection of the backbone feature at 32², 64² and 128²;
* three heads (from 16², 32² and 128²) of stride-2 depthwise-separable convs down to 4×4×32, flattened in
  NHWC order, one dense layer: the coarse, middle and fine latents, each used for four of the 12 W+ slots;
* plus the stored average latent.

`FaceEncoder.from_graph` walks the graph's data flow from the input and takes every weight from the op it
expects, so a file with a different network fails loudly instead of loading garbage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine.networks.tf_layers import PerImageBatchNorm, TfConv, as_tensor, dense, leaky_alpha
from services.worker.engine.tflite_weights import Op, TfliteGraph

BACKBONE_BLOCKS = 13  # MobileNetV2's expanded_conv and block_1 … block_12
TAPS = (0, 2, 5, 12)  # blocks whose outputs feed the pyramid: 128², 64², 32², 16²
HEAD_LEVELS = (0, 1, 3)  # pyramid levels (16², 32², 64², 128²) read by the coarse, middle and fine heads


class ConvBN(nn.Module):
    def __init__(self, conv: TfConv, norm: PerImageBatchNorm, relu6: bool) -> None:
        super().__init__()
        self.conv, self.norm, self.relu6 = conv, norm, relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.hardtanh_(x, 0.0, 6.0) if self.relu6 else x

    @classmethod
    def load(
        cls, graph: TfliteGraph, conv_op: Op, *, relu6: bool, padding: tuple[int, int, int, int] | None = None
    ) -> tuple[ConvBN, int]:
        norm_op = graph.follow(conv_op.out, "FusedBatchNormV3")
        out = norm_op.outputs[0]
        if relu6:
            out = graph.follow(out, "RELU6").out
        return cls(
            TfConv.from_op(graph, conv_op, padding=padding), PerImageBatchNorm.from_op(graph, norm_op), relu6
        ), out


class InvertedResidual(nn.Module):
    def __init__(self, expand: ConvBN | None, depthwise: ConvBN, project: ConvBN, residual: bool) -> None:
        super().__init__()
        self.expand, self.depthwise, self.project, self.residual = expand, depthwise, project, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        projected: torch.Tensor = self.project(self.depthwise(h))
        return projected.add_(x) if self.residual else projected

    @classmethod
    def load(cls, graph: TfliteGraph, x: int, *, expand: bool) -> tuple[InvertedResidual, int]:
        h, expand_layer = x, None
        if expand:
            expand_layer, h = ConvBN.load(graph, graph.follow(x, "CONV_2D"), relu6=True)
        pads = [op for op in graph.consumers(h) if op.kind == "PAD"]
        padding = None
        if pads:  # Keras pads stride-2 blocks explicitly (bottom/right), then runs a VALID conv
            (_, (top, bottom), (left, right), _) = graph.weight(pads[0], 1).tolist()
            padding, h = (left, right, top, bottom), pads[0].out
        depthwise, h = ConvBN.load(graph, graph.follow(h, "DEPTHWISE_CONV_2D"), relu6=True, padding=padding)
        project, h = ConvBN.load(graph, graph.follow(h, "CONV_2D"), relu6=False)
        adds = [op for op in graph.consumers(h) if op.kind == "ADD" and x in op.inputs]
        if adds:
            h = adds[0].out
        return cls(expand_layer, depthwise, project, residual=bool(adds)), h


class SeparableConv(nn.Module):
    """Depthwise then pointwise conv, optionally followed by a leaky ReLU."""

    def __init__(self, depthwise: TfConv, pointwise: TfConv, alpha: float | None) -> None:
        super().__init__()
        self.depthwise, self.pointwise, self.alpha = depthwise, pointwise, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(self.depthwise(x))
        return x if self.alpha is None else F.leaky_relu_(x, self.alpha)

    @classmethod
    def load(
        cls,
        graph: TfliteGraph,
        x: int,
        *,
        activated: bool,
        stride: int | None = None,
    ) -> tuple[SeparableConv, int]:
        where = None if stride is None else (lambda op: op.options["StrideH"] == stride)
        dw_op = graph.follow(x, "DEPTHWISE_CONV_2D", where)
        pw_op = graph.follow(dw_op.out, "CONV_2D")
        out, alpha = pw_op.out, None
        if activated:
            act = graph.follow(out, "LEAKY_RELU")
            out, alpha = act.out, leaky_alpha(graph, act)
        return cls(TfConv.from_op(graph, dw_op), TfConv.from_op(graph, pw_op), alpha), out


class DilatedContext(nn.Module):
    """Three dilated depthwise-separable branches, concatenated, fused, added back (16×16)."""

    def __init__(self, branches: list[SeparableConv], fuse: SeparableConv, alpha: float) -> None:
        super().__init__()
        self.branches, self.fuse, self.alpha = nn.ModuleList(branches), fuse, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
        return F.leaky_relu_(h.add_(x), self.alpha)

    @classmethod
    def load(cls, graph: TfliteGraph, x: int) -> tuple[DilatedContext, int]:
        branches: dict[int, SeparableConv] = {}
        for op in graph.consumers(x):
            if op.kind == "SPACE_TO_BATCH_ND":  # TF's lowering of a dilated conv
                rate = int(graph.weight(op, 1)[0])
                pad = int(graph.weight(op, 2)[0][0])
                dw_op = graph.follow(op.out, "DEPTHWISE_CONV_2D")
                h = graph.follow(dw_op.out, "BATCH_TO_SPACE_ND").out
                depthwise = TfConv.from_op(graph, dw_op, padding=(pad, pad, pad, pad), dilation=rate)
            elif op.kind == "DEPTHWISE_CONV_2D":
                h, depthwise = op.out, TfConv.from_op(graph, op)
            else:
                continue
            pw_op = graph.follow(h, "CONV_2D")
            act = graph.follow(pw_op.out, "LEAKY_RELU")
            branches[act.out] = SeparableConv(depthwise, TfConv.from_op(graph, pw_op), leaky_alpha(graph, act))
        concat = graph.follow(next(iter(branches)), "CONCATENATION")
        ordered = [branches[t] for t in concat.inputs]
        fuse, h = SeparableConv.load(graph, concat.out, activated=False)
        add = graph.follow(h, "ADD", lambda op: x in op.inputs)
        act = graph.follow(add.out, "LEAKY_RELU")
        return cls(ordered, fuse, leaky_alpha(graph, act)), act.out


class TopDownMerge(nn.Module):
    """Upsample the coarser pyramid level and add a lateral projection of the backbone feature."""

    def __init__(self, up: list[SeparableConv], lateral: SeparableConv, alpha: float) -> None:
        super().__init__()
        self.up, self.lateral, self.alpha = nn.ModuleList(up), lateral, alpha

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)  # half-pixel centres
        for layer in self.up:
            h = layer(h)
        return F.leaky_relu_(h.add_(self.lateral(skip)), self.alpha)

    @classmethod
    def load(cls, graph: TfliteGraph, coarse: int, skip: int) -> tuple[TopDownMerge, int]:
        resize = graph.follow(coarse, "RESIZE_BILINEAR")
        if resize.options.get("AlignCorners") or not resize.options.get("HalfPixelCenters"):
            raise graph.mismatch(resize, "expected half-pixel-centre bilinear resizing")
        first, h = SeparableConv.load(graph, resize.out, activated=True)
        second, h = SeparableConv.load(graph, h, activated=False)
        add = graph.follow(h, "ADD")
        lateral_pw = graph.made_by(graph.other_input(add, h), "CONV_2D")
        lateral_dw = graph.made_by(lateral_pw.inputs[0], "DEPTHWISE_CONV_2D")
        if lateral_dw.inputs[0] != skip:
            raise graph.mismatch(lateral_dw, "the lateral branch does not read the expected backbone feature")
        lateral = SeparableConv(TfConv.from_op(graph, lateral_dw), TfConv.from_op(graph, lateral_pw), None)
        act = graph.follow(add.out, "LEAKY_RELU")
        return cls([first, second], lateral, leaky_alpha(graph, act)), act.out


class LatentHead(nn.Module):
    """Stride-2 separable convs down to 4×4, flattened (NHWC order, as TF reshapes), one dense layer."""

    def __init__(self, downs: list[SeparableConv], fc: nn.Linear, alpha: float) -> None:
        super().__init__()
        self.downs, self.fc, self.alpha = nn.ModuleList(downs), fc, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.downs:
            x = layer(x)
        return F.leaky_relu(self.fc(x.permute(0, 2, 3, 1).flatten(1)), self.alpha)

    @classmethod
    def load(cls, graph: TfliteGraph, x: int) -> tuple[LatentHead, int]:
        downs = []
        while not any(op.kind == "RESHAPE" for op in graph.consumers(x)):
            layer, x = SeparableConv.load(graph, x, activated=True, stride=2)
            downs.append(layer)
        fc_op = graph.follow(graph.follow(x, "RESHAPE").out, "FULLY_CONNECTED")
        act = graph.follow(fc_op.out, "LEAKY_RELU")
        # RESHAPE to 1×1×512 and a full STRIDED_SLICE follow: layout no-ops before the W+ concatenation.
        out = graph.follow(graph.follow(act.out, "RESHAPE").out, "STRIDED_SLICE").out
        return cls(downs, dense(graph, fc_op), leaky_alpha(graph, act)), out


class FaceEncoder(nn.Module):
    """N×3×256×256 in [-1, 1] → W+ latents N×12×512."""

    latent_mean: torch.Tensor

    def __init__(
        self,
        stem: ConvBN,
        blocks: list[InvertedResidual],
        context: DilatedContext,
        merges: list[TopDownMerge],
        heads: list[LatentHead],
        slots: list[int],
        latent_mean: torch.Tensor,
    ) -> None:
        super().__init__()
        self.stem, self.blocks, self.context = stem, nn.ModuleList(blocks), context
        self.merges, self.heads = nn.ModuleList(merges), nn.ModuleList(heads)  # coarse → fine
        self.slots = slots  # W+ slot → head index
        self.register_buffer("latent_mean", latent_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in TAPS:
                features.append(x)
        levels = [self.context(features[-1])]
        for merge, skip in zip(self.merges, reversed(features[:-1])):
            levels.append(merge(levels[-1], skip))
        latents = [head(levels[level]) for head, level in zip(self.heads, HEAD_LEVELS)]
        per_slot = torch.stack([latents[head] for head in self.slots], dim=1)
        return per_slot + self.latent_mean.to(per_slot.dtype)

    @classmethod
    def from_graph(cls, graph: TfliteGraph) -> tuple[FaceEncoder, int]:
        """Returns the encoder and the graph tensor holding its W+ output (where the generator starts)."""
        stem, x = ConvBN.load(graph, graph.follow(graph.input, "CONV_2D"), relu6=True)
        blocks, taps = [], []
        for index in range(BACKBONE_BLOCKS):
            block, x = InvertedResidual.load(graph, x, expand=index > 0)
            blocks.append(block)
            if index in TAPS:
                taps.append(x)
        context, level = DilatedContext.load(graph, taps[-1])
        merges, levels = [], [level]
        for skip in reversed(taps[:-1]):
            merge, level = TopDownMerge.load(graph, level, skip)
            merges.append(merge)
            levels.append(level)
        heads, head_outs = [], []
        for level_index in HEAD_LEVELS:
            head, out = LatentHead.load(graph, levels[level_index])
            heads.append(head)
            head_outs.append(out)
        concat = graph.follow(head_outs[0], "CONCATENATION")
        slots = [head_outs.index(t) for t in concat.inputs]
        transpose = graph.follow(concat.out, "TRANSPOSE")
        add = graph.follow(transpose.out, "ADD")
        mean = graph.weight(add, 1 if add.inputs[0] == transpose.out else 0)
        encoder = cls(stem, blocks, context, merges, heads, slots, as_tensor(mean).reshape(1, len(slots), -1))
        return encoder, add.out
