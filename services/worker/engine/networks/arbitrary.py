"""Arbitrary-style networks (Ghiasi et al., "Exploring the structure of a real-time, arbitrary neural artistic
stylization network"), re-implemented from the int8 QDQ graphs `arbitrary_predict.onnx` / `arbitrary_transform.onnx`.

* `StylePredictor` - MobileNetV2 that maps a style image to a 100-d style vector (global average pooling, so any
  input size works; the ONNX graph is fixed at 256x256).
* `StyleTransformer` - the same contract/residual/expand body as the 26-style network (`style_body.StyleNetBody`),
  whose instance-norm scale/shift come from the style vector through 1x1 convs (i.e. linear maps). Any size works
  (sides padded internally to a multiple of 4, >= 8 px); the ONNX graph is fixed at 384x384.

Weights are the graphs' int8 weights dequantized to float32; activations are NOT fake-quantized, so outputs differ
from onnxruntime's int8 execution by the activation quantization noise (see the parity tests for the figures). Both
modules take NCHW tensors in 0..1; the ONNX graphs were NHWC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from services.worker.engine.networks.style_body import StyleNetBody
from services.worker.engine.onnx_weights import ConvSpec, OnnxGraph

STYLE_DIM = 100
PREDICTOR_SIZE = 256  # the size the predictor was trained and exported at
TRANSFORMER_SIZE = 384  # ... and the transformer


# -- style predictor (MobileNetV2) ------------------------------------------------


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) along one axis; the extra pixel goes after."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


class ConvAct(nn.Module):
    """Conv (TF 'SAME' zero padding) + bias [+ ReLU6]; depthwise when `groups` > 1."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, spec: ConvSpec, relu6: bool) -> None:
        super().__init__()
        self.register_buffer("weight", spec.weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", spec.bias)
        self.stride = spec.stride[0]
        self.groups = spec.group
        self.relu6 = relu6

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight.shape[-1]
        # computed per call (not the exported fixed pads) so any size pads like TF did
        top, bottom = _same_pad(x.shape[-2], k, self.stride)
        left, right = _same_pad(x.shape[-1], k, self.stride)
        if top == bottom and left == right:
            padding = (top, left)  # symmetric: let the conv pad (no copy)
        else:
            x, padding = F.pad(x, (left, right, top, bottom)), (0, 0)
        x = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=padding, groups=self.groups)
        return x.clamp_(0.0, 6.0) if self.relu6 else x


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand, ReLU6] -> 3x3 depthwise, ReLU6 -> 1x1 linear project [+ input]."""

    def __init__(self, expand: ConvSpec | None, depthwise: ConvSpec, project: ConvSpec) -> None:
        super().__init__()
        self.expand = ConvAct(expand, relu6=True) if expand is not None else nn.Identity()
        self.depthwise = ConvAct(depthwise, relu6=True)
        self.project = ConvAct(project, relu6=False)
        in_channels = expand.weight.shape[1] if expand is not None else depthwise.weight.shape[0]
        self.residual = depthwise.stride == (1, 1) and in_channels == project.weight.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.project(self.depthwise(self.expand(x)))
        return y.add_(x) if self.residual else y


class StylePredictor(nn.Module):
    """`forward(style_image [N,3,H,W] in 0..1) -> style vector [N, 100]`.

    Trained at 256x256 (centre-cropped, as the original wrapper feeds it); other sizes run (global average
    pooling) but shift the statistics the vector summarises. Stride-2 convs pad like TensorFlow's 'SAME' for the
    actual size; the export's fixed pads agree with it whenever every stride-2 input is even (sides that are
    multiples of 32, such as 256).
    """

    def __init__(
        self,
        stem: ConvSpec,
        blocks: Sequence[tuple[ConvSpec | None, ConvSpec, ConvSpec]],
        head: ConvSpec,
        bottleneck: ConvSpec,
    ) -> None:
        super().__init__()
        self.stem = ConvAct(stem, relu6=True)
        self.blocks = nn.Sequential(*(InvertedResidual(*b) for b in blocks))
        self.head = ConvAct(head, relu6=True)
        self.bottleneck = ConvAct(bottleneck, relu6=False)

    @torch.no_grad()
    def forward(self, style_image: Tensor) -> Tensor:
        x = style_image.to(self.stem.weight.dtype).contiguous(memory_format=torch.channels_last)
        x = self.head(self.blocks(self.stem(x)))
        x = x.mean(dim=(2, 3), keepdim=True)
        vector: Tensor = self.bottleneck(x)
        return vector.flatten(1)

    @classmethod
    def from_onnx(cls, path: str | Path) -> StylePredictor:
        graph = OnnxGraph.load(path)
        blocks: list[tuple[ConvSpec | None, ConvSpec, ConvSpec]] = []
        while graph.has_conv(name := "MobilenetV2/expanded_conv" + (f"_{len(blocks)}" if blocks else "")):
            expand = graph.conv(f"{name}/expand") if blocks else None  # the first block has no expansion
            blocks.append((expand, graph.conv(f"{name}/depthwise"), graph.conv(f"{name}/project")))
        return cls(
            stem=graph.conv("MobilenetV2/Conv"),
            blocks=blocks,
            head=graph.conv("MobilenetV2/Conv_1"),
            bottleneck=graph.conv("mobilenet_conv/Conv"),
        ).eval()


# -- style transformer -------------------------------------------------------------


class StyleTransformer(nn.Module):
    """`forward(content [N,3,H,W] in 0..1, style_vector [N,100] or [100]) -> [N,3,H,W] in 0..1`.

    Any size with sides >= 8 px (padded to a multiple of 4 inside, cropped back). The output is an NCHW tensor in
    channels-last memory.
    """

    proj_weight: Tensor
    proj_bias: Tensor

    def __init__(
        self, body: StyleNetBody, gamma: Sequence[tuple[Tensor, Tensor]], beta: Sequence[tuple[Tensor, Tensor]]
    ) -> None:
        super().__init__()
        if body.norm_contract:
            raise ValueError("the arbitrary-style transformer has no norm in its contracting convs")
        for c, (gw, gb), (bw, bb) in zip(body.norm_channels, gamma, beta, strict=True):
            if gw.shape[0] != c or bw.shape[0] != c or gb.shape != (c,) or bb.shape != (c,):
                raise ValueError(f"style projections do not fit a conv with {c} outputs")
        self.body = body
        # Every layer's gamma and beta projection stacked into one linear map: one matmul per forward turns the
        # style vectors into all norm params.
        self.register_buffer("proj_weight", torch.cat([w.flatten(1) for w, _ in [*gamma, *beta]]).float())
        self.register_buffer("proj_bias", torch.cat([b for _, b in [*gamma, *beta]]).float())
        self._split = body.norm_channels * 2

    def forward(self, content: Tensor, style_vector: Tensor) -> Tensor:
        n = content.shape[0]
        v = style_vector.to(device=self.proj_weight.device, dtype=torch.float32).reshape(-1, STYLE_DIM)
        if v.shape[0] == 1 and n > 1:
            v = v.expand(n, -1)
        if v.shape[0] != n:
            raise ValueError(f"need one style vector per image: got {v.shape[0]} for {n} images")
        # float32 even when the module was cast to half/bf16 (tiny, and keeps the norm params exact)
        params = torch.split(F.linear(v, self.proj_weight.float(), self.proj_bias.float()), self._split, dim=1)
        half = len(params) // 2
        painted: Tensor = self.body(content, list(zip(params[:half], params[half:])))
        return painted

    @classmethod
    def from_onnx(cls, path: str | Path) -> StyleTransformer:
        graph = OnnxGraph.load(path)
        root = "transformer"
        contract = [graph.conv(f"{root}/contract/conv{i}") for i in (1, 2, 3)]
        blocks = 0
        while graph.has_conv(f"{root}/residual/residual{blocks + 1}/conv1"):
            blocks += 1
        residual_names = [f"residual/residual{k}/conv{j}" for k in range(1, blocks + 1) for j in (1, 2)]
        expand_names = [f"expand/conv{i}/conv" for i in (1, 2, 3)]
        residual = [graph.conv(f"{root}/{name}").weight for name in residual_names]
        expand = [graph.conv(f"{root}/{name}").weight for name in expand_names]
        body = StyleNetBody(
            contract=[(c.weight, c.bias) for c in contract],
            residual=list(zip(residual[::2], residual[1::2])),
            expand=expand,
            norm_contract=False,
        )
        normed = residual_names + expand_names

        def projection(name: str, which: str) -> tuple[Tensor, Tensor]:
            spec = graph.conv(f"style_params/{root}/{name}/StyleNorm/{which}")
            if spec.bias is None:  # the exported graph's 1x1 convs all have one
                raise ValueError(f"style projection {spec.name} has no bias")
            return spec.weight, spec.bias

        # StyleNorm: Conv_1 gives the scale (gamma), Conv the offset (beta)
        gamma = [projection(name, "Conv_1") for name in normed]
        beta = [projection(name, "Conv") for name in normed]
        return cls(body, gamma, beta).eval()
