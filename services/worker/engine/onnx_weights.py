"""Read weights out of ONNX files so our own torch modules can use them.

Only the pieces the re-implemented networks need: constant tensors
(initializers and ``Constant`` nodes), weight dequantization for QDQ graphs
(``DequantizeLinear`` fed by constants), and a few graph look-ups (which node
produces / consumes a tensor, a Conv's weight, bias and attributes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

PathLike = str | Path


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None, axis: int = 1) -> np.ndarray:
    """ONNX DequantizeLinear: ``(q - zero_point) * scale`` as float32.

    ``scale``/``zero_point`` are scalars (per-tensor) or 1-D along ``axis``
    (per-channel). The subtraction is done in int64 and the product in
    float32, the same order onnxruntime uses, so the results are bit-equal.
    """
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros((), np.int64) if zero_point is None else np.asarray(zero_point).astype(np.int64)
    if scale.ndim > 1:
        raise ValueError(f"blocked quantization (scale shape {scale.shape}) is not supported")
    if scale.ndim == 1 and q.ndim > 0:
        # per-axis: broadcast the 1-D parameters along ``axis``
        axis = axis % q.ndim
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape) if zp.ndim == 1 else zp
    values: np.ndarray = (q.astype(np.int64) - zp).astype(np.float32) * scale
    return values


@dataclass(frozen=True)
class ConvSpec:
    """A Conv node with its (dequantized) parameters, in ONNX's OIHW layout."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # ONNX order: top, left, bottom, right
    group: int


class OnnxGraph:
    """A loaded ONNX model with constant folding of weight dequantization."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.nodes: list[onnx.NodeProto] = list(model.graph.node)
        self._producer: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output}
        self._consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self._consumers.setdefault(name, []).append(node)
        self.constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in model.graph.initializer
        }
        for node in self.nodes:
            if node.op_type == "Constant":
                value = _constant_value(node)
                if value is not None:
                    self.constants[node.output[0]] = value
        # Fold DequantizeLinear nodes whose inputs are all constant: these are
        # the int8 weights/biases of a QDQ graph (activations are not constant).
        for node in self.nodes:
            if node.op_type == "DequantizeLinear" and all(self.is_constant(i) for i in node.input if i):
                q, scale = self.constants[node.input[0]], self.constants[node.input[1]]
                zero_point = self.constants[node.input[2]] if len(node.input) > 2 and node.input[2] else None
                axis = int(self.attrs(node).get("axis", 1))
                self.constants[node.output[0]] = dequantize(q, scale, zero_point, axis)

    @classmethod
    def load(cls, path: PathLike) -> OnnxGraph:
        return cls(onnx.load(str(path)))

    # -- tensors ---------------------------------------------------------------

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def array(self, name: str) -> np.ndarray:
        """A constant tensor (initializer, Constant node or folded dequantization)."""
        try:
            return self.constants[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a constant tensor of this graph") from None

    def tensor(self, name: str) -> torch.Tensor:
        """Like :meth:`array`, as a float32 torch tensor (owning its memory)."""
        return torch.from_numpy(np.array(self.array(name), dtype=np.float32, copy=True))

    def float_weights(self) -> dict[str, torch.Tensor]:
        """Every floating-point constant (dequantized where needed), by tensor name."""
        return {
            name: self.tensor(name) for name, value in self.constants.items() if np.issubdtype(value.dtype, np.floating)
        }

    # -- graph walking -----------------------------------------------------------

    def producer(self, name: str) -> onnx.NodeProto | None:
        return self._producer.get(name)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return self._consumers.get(name, [])

    def find(self, op_type: str) -> Iterator[onnx.NodeProto]:
        return (n for n in self.nodes if n.op_type == op_type)

    @staticmethod
    def attrs(node: onnx.NodeProto) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def conv(self, weight_prefix: str) -> ConvSpec:
        """The single Conv whose weight tensor name starts with ``weight_prefix + '/'``.

        Matching on the weight name is robust to how the exporter named the
        node itself (tf2onnx names nodes after their outputs, which can belong
        to a later op such as a fused activation).
        """
        prefix = weight_prefix.rstrip("/") + "/"
        hits = [n for n in self.find("Conv") if n.input[1].startswith(prefix)]
        if len(hits) != 1:
            raise KeyError(f"expected one Conv with weights under {prefix!r}, found {len(hits)}")
        return self.conv_spec(hits[0])

    def has_conv(self, weight_prefix: str) -> bool:
        prefix = weight_prefix.rstrip("/") + "/"
        return any(n.input[1].startswith(prefix) for n in self.find("Conv"))

    def conv_spec(self, node: onnx.NodeProto) -> ConvSpec:
        attrs = self.attrs(node)
        weight = self.tensor(node.input[1])
        bias = self.tensor(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise ValueError(f"Conv {node.name}: auto_pad is not supported")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise ValueError(f"Conv {node.name}: dilation is not supported")
        pads = tuple(attrs.get("pads", [0, 0, 0, 0]))
        return ConvSpec(
            name=node.name or node.output[0],
            weight=weight,
            bias=bias,
            stride=tuple(attrs.get("strides", [1, 1])),
            pads=pads,
            group=int(attrs.get("group", 1)),
        )


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
            return np.asarray(helper.get_attribute_value(attr))
    return None  # sparse / string constants: not weights


def strip_activation_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float copy of a QDQ model: activation Quantize/DequantizeLinear become Identity.

    Weight dequantization (constant inputs) is kept, so the result computes the
    network in float32 with the int8 weights - what our torch modules do. It is
    a reference for exact parity checks, and with ``free_input_dims`` it can
    also run at sizes other than the exported one.
    """
    graph = OnnxGraph(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if node.op_type == "QuantizeLinear" or (
            node.op_type == "DequantizeLinear" and not all(graph.is_constant(i) for i in node.input if i)
        ):
            del node.input[1:]
            del node.attribute[:]
            node.op_type = "Identity"
    # intermediate int8 type annotations no longer hold
    del out.graph.value_info[:]
    for output in out.graph.output:
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return out


def free_input_dims(model: onnx.ModelProto, dims: dict[int, str]) -> onnx.ModelProto:
    """Make the given axes of every graph input and output symbolic (e.g. {1: "h", 2: "w"})."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in list(out.graph.input) + list(out.graph.output):
        shape = value.type.tensor_type.shape
        for axis, sym in dims.items():
            if axis < len(shape.dim) and shape.dim[axis].dim_value > 1:
                shape.dim[axis].ClearField("dim_value")
                shape.dim[axis].dim_param = sym
    return out
