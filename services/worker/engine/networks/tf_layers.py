"""TensorFlow-exact building blocks for networks whose weights come from a `.tflite` graph.

Three things differ from the obvious torch layer and each changes the output (#8):

* TF "SAME" padding is asymmetric when the total is odd (a stride-2 3×3 conv on an even size pads 0 before and
  1 after); torch's `padding=` is symmetric. `TfConv` computes TF's split for the actual input size.
* Depthwise convs appear both as DEPTHWISE_CONV_2D (weights 1×kh×kw×C) and as grouped CONV_2D (weights
  C×kh×kw×1 over C channels); both load into one grouped `TfConv`.
* The stylizer's batch norms run with `is_training=True`: each image is normalised with its *own* statistics
  (biased variance, the op's epsilon). With the stored running statistics every face collapses to one generic
  face. In a batch we keep per-image statistics, so a photo paints the same alone or batched.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.worker.engine.tflite_weights import Op, TfliteGraph


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class TfConv(nn.Module):
    """A 2-D convolution (full, grouped or depthwise) with TF's padding rules."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        stride: int,
        dilation: int = 1,
        groups: int = 1,
        padding: str | tuple[int, int, int, int] = "SAME",
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None or not bias.any() else nn.Parameter(bias, requires_grad=False)
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.padding = padding  # "SAME", "VALID" or explicit (left, right, top, bottom)
        self.kernel = weight.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "SAME" and self.kernel > 1:
            top, bottom = _same_padding(x.shape[-2], self.kernel, self.stride, self.dilation)
            left, right = _same_padding(x.shape[-1], self.kernel, self.stride, self.dilation)
            pads: tuple[int, ...] = (left, right, top, bottom)
        elif isinstance(self.padding, tuple):
            pads = self.padding
        else:
            pads = (0, 0, 0, 0)
        if pads[0] == pads[1] == pads[2] == pads[3]:
            return F.conv2d(x, self.weight, self.bias, self.stride, pads[0], self.dilation, self.groups)
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    @classmethod
    def from_op(
        cls,
        graph: TfliteGraph,
        op: Op,
        *,
        padding: tuple[int, int, int, int] | None = None,
        dilation: int | None = None,
    ) -> TfConv:
        if op.options.get("FusedActivationFunction", 0) != 0:
            raise graph.mismatch(op, "fused activations are not expected here")
        raw = graph.weight(op, 1)
        bias = as_tensor(graph.weight(op, 2)) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        in_channels = graph.shape(op.inputs[0])[-1]
        if op.kind == "DEPTHWISE_CONV_2D":
            if op.options.get("DepthMultiplier", 1) != 1:
                raise graph.mismatch(op, "depth multiplier other than 1")
            weight = as_tensor(raw).permute(3, 0, 1, 2)  # 1×kh×kw×C → C×1×kh×kw
            groups = in_channels
        elif op.kind == "CONV_2D":
            weight = as_tensor(raw).permute(0, 3, 1, 2)  # O×kh×kw×I → O×I×kh×kw
            groups = in_channels // raw.shape[-1]  # a grouped conv stores I/groups input channels
        else:
            raise graph.mismatch(op, "not a convolution")
        stride = int(op.options["StrideH"])
        if stride != op.options["StrideW"]:
            raise graph.mismatch(op, "anisotropic stride")
        if dilation is None:
            dilation = int(op.options.get("DilationHFactor", 1))
        pad: str | tuple[int, int, int, int] = padding if padding is not None else op.options["Padding"]
        return cls(weight.contiguous(), bias, stride=stride, dilation=dilation, groups=groups, padding=pad)


class PerImageBatchNorm(nn.Module):
    """FusedBatchNormV3 with is_training=True at batch size 1: normalise each image by its own statistics.

    `running_mean`/`running_var` hold the statistics stored in the file; they are used only when
    `use_running_stats` is set, which exists to show (in a test) why they must not be.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(
        self, gamma: torch.Tensor, beta: torch.Tensor, eps: float, running_mean: torch.Tensor, running_var: torch.Tensor
    ) -> None:
        super().__init__()
        self.gamma = nn.Parameter(gamma, requires_grad=False)
        self.beta = nn.Parameter(beta, requires_grad=False)
        self.register_buffer("running_mean", running_mean)
        self.register_buffer("running_var", running_var)
        self.eps = eps
        self.use_running_stats = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma.to(x.dtype), self.beta.to(x.dtype)
        if self.use_running_stats:
            return F.batch_norm(
                x,
                self.running_mean.to(x.dtype),
                self.running_var.to(x.dtype),
                gamma,
                beta,
                training=False,
                eps=self.eps,
            )
        if x.shape[0] == 1:
            # Training-mode batch norm at batch 1 *is* per-image statistics, and is one fused pass in any
            # memory layout: 3× faster than var_mean + affine here (10 → 3 ms at 192×128²).
            return F.batch_norm(x, None, None, gamma, beta, training=True, eps=self.eps)
        return F.instance_norm(x, weight=gamma, bias=beta, eps=self.eps)

    @classmethod
    def from_op(cls, graph: TfliteGraph, op: Op) -> PerImageBatchNorm:
        if op.kind != "FusedBatchNormV3" or not op.options.get("is_training"):
            raise graph.mismatch(op, "expected FusedBatchNormV3 with is_training=True")
        stored = graph.variable_initial_values
        mean_name, var_name = graph.variable_name(op.inputs[3]), graph.variable_name(op.inputs[4])
        return cls(
            as_tensor(graph.weight(op, 1)),
            as_tensor(graph.weight(op, 2)),
            float(op.options["epsilon"]),
            as_tensor(stored[mean_name]),
            as_tensor(stored[var_name]),
        )


def leaky_alpha(graph: TfliteGraph, op: Op) -> float:
    if op.kind != "LEAKY_RELU":
        raise graph.mismatch(op, "expected LEAKY_RELU")
    return float(op.options["Alpha"])


def dense(graph: TfliteGraph, op: Op) -> nn.Linear:
    """FULLY_CONNECTED → nn.Linear (TFLite stores weights out×in, as torch does)."""
    if op.kind != "FULLY_CONNECTED" or op.options.get("FusedActivationFunction", 0) != 0:
        raise graph.mismatch(op, "expected FULLY_CONNECTED without a fused activation")
    weight = as_tensor(graph.weight(op, 1))
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.weight = nn.Parameter(weight, requires_grad=False)
    layer.bias = nn.Parameter(as_tensor(graph.weight(op, 2)), requires_grad=False)
    return layer


def scalar(graph: TfliteGraph, op: Op, position: int) -> float:
    value = graph.weight(op, position)
    if value.size != 1:
        raise graph.mismatch(op, f"input {position} should be a scalar")
    return float(value.reshape(()))
