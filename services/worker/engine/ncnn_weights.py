"""Read ncnn `.param`/`.bin` model files so our own torch modules can use their weights.

`.param` is text. Line 1 is the magic 7767517, line 2 "<layer count> <blob count>", then one line per
layer: ``Type name n_in n_out <n_in input blobs> <n_out output blobs> key=value ...``. Values are ints, or
floats when they contain ``.``/``e``; a key ``-23300 - k`` carries an array for key ``k`` written as
``count,v1,v2,...`` (e.g. ``-23310=1,0.2`` is key 10 = [0.2]). Convolution keys: 0=num_output
1=kernel_w 11=kernel_h 2=dilation 3=stride 4=pad 5=bias_term 6=weight_data_size 8=int8_scale_term
9=activation_type 10=activation_params.

`.bin` is the layers' weights concatenated in layer order, with no names or shapes: how many values a
layer reads follows from its params, so the two files are only meaningful together. Values come in two
kinds (ncnn's ModelBin load types):

* "auto" blobs (convolution weights) start with a 4-byte little-endian tag: 0x01306B47 = fp16 (payload
  padded to a multiple of 4 bytes), 0x0002C056 = fp32, 0 = fp32, 0x000D4B38 = int8 (needs the layer's
  dequantization scales). Any other non-zero tag means an old 256-entry lookup-table format. We read fp16
  and fp32 and reject the rest: a random tag is far more likely a corrupt file than a lookup table.
* "raw" blobs (biases, PReLU slopes) are plain fp32 without a tag.

All values come back as float32 NumPy arrays, flat, in the order ncnn reads them (convolution weights
are OIHW, PyTorch's layout).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from shared.errors import ModelFilesError

if TYPE_CHECKING:  # only for `build_module`'s types: parsing and reading the files need no torch
    import torch
    from torch import nn

_Module = TypeVar("_Module", bound="nn.Module")

PathLike = str | Path
Scalar = int | float
ParamValue = Scalar | tuple[Scalar, ...]

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x0002C056
TAG_INT8 = 0x000D4B38
_ARRAY_KEY_BASE = -23300

# Layers whose weights are one tagged weight blob plus an optional raw bias of num_output values.
_CONV_LIKE = frozenset(
    {"Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "InnerProduct"}
)
# Layers known to read nothing from the .bin. Anything else is refused: we could not tell how many bytes
# it consumes, and every later layer's weights would be read from the wrong offset.
_WEIGHTLESS = frozenset(
    {
        "Input",
        "Split",
        "Concat",
        "Eltwise",
        "BinaryOp",
        "Interp",
        "PixelShuffle",
        "ReLU",
        "Sigmoid",
        "TanH",
        "Clip",
        "Noop",
        "Pooling",
        "Crop",
        "Reshape",
        "Permute",
        "Flatten",
        "Softmax",
        "Dropout",
    }
)


@dataclass(frozen=True)
class NcnnLayer:
    """One layer line; `params` by integer key, arrays as tuples under their plain key."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: Mapping[int, ParamValue] = field(default_factory=lambda: MappingProxyType({}))

    def get_int(self, key: int, default: int = 0) -> int:
        return int(self._scalar(key, default))

    def get_float(self, key: int, default: float = 0.0) -> float:
        return float(self._scalar(key, default))

    def _scalar(self, key: int, default: Scalar) -> Scalar:
        value = self.params.get(key, default)
        if isinstance(value, tuple):  # int()/float() of it would fail anyway: say which param
            raise TypeError(f"layer {self.name}: param {key} is an array, not a number")
        return value

    def get_array(self, key: int) -> tuple[Scalar, ...]:
        value = self.params.get(key, ())
        return value if isinstance(value, tuple) else (value,)


@dataclass(frozen=True)
class NcnnParam:
    """A parsed `.param` file: the layers in file (= execution and weight) order."""

    layers: tuple[NcnnLayer, ...]
    blob_count: int

    @classmethod
    def load(cls, path: PathLike) -> NcnnParam:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFilesError(f"cannot read ncnn param file {path}: {exc}") from exc
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "<param>") -> NcnnParam:
        lines = [line.split() for line in text.splitlines() if line.strip()]
        if len(lines) < 2 or lines[0] != [str(MAGIC)] or len(lines[1]) != 2:
            raise ModelFilesError(f"{source}: not an ncnn param file (magic {MAGIC} and counts expected)")
        try:
            layer_count, blob_count = int(lines[1][0]), int(lines[1][1])
            layers = tuple(_parse_layer(tokens) for tokens in lines[2:])
        except (ValueError, IndexError) as exc:
            raise ModelFilesError(f"{source}: malformed layer line ({exc})") from exc
        if len(layers) != layer_count:
            raise ModelFilesError(f"{source}: header says {layer_count} layers, file has {len(layers)}")
        return cls(layers=layers, blob_count=blob_count)

    def of_type(self, layer_type: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type == layer_type]

    def producer(self, blob: str) -> NcnnLayer:
        for layer in self.layers:
            if blob in layer.outputs:
                return layer
        raise KeyError(f"no layer produces blob {blob!r}")


def _parse_value(text: str) -> Scalar:
    # ncnn's own rule: a value is a float when it contains '.' or an exponent, an int otherwise.
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_layer(tokens: list[str]) -> NcnnLayer:
    layer_type, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
    blobs = tokens[4 : 4 + n_in + n_out]
    if len(blobs) != n_in + n_out or any("=" in b for b in blobs):
        raise ValueError(f"layer {name}: expected {n_in} inputs and {n_out} outputs")
    params: dict[int, ParamValue] = {}
    for item in tokens[4 + n_in + n_out :]:
        key_text, _, value_text = item.partition("=")
        key = int(key_text)
        if key <= _ARRAY_KEY_BASE:
            count, *values = value_text.split(",")
            if int(count) != len(values):
                raise ValueError(f"layer {name}: array {item!r} has a wrong count")
            params[_ARRAY_KEY_BASE - key] = tuple(_parse_value(v) for v in values)
        else:
            params[key] = _parse_value(value_text)
    return NcnnLayer(layer_type, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), MappingProxyType(params))


def _blob_specs(layer: NcnnLayer) -> list[tuple[int, bool]]:
    """(value count, tagged?) of each blob the layer reads, in ncnn's load_model order."""
    if layer.type in _CONV_LIKE:
        if layer.get_int(8):
            raise ModelFilesError(f"layer {layer.name}: int8-quantized weights are not supported")
        specs = [(layer.get_int(6), True)]
        if layer.get_int(5):
            specs.append((layer.get_int(0), False))
        return specs
    if layer.type == "PReLU":
        return [(layer.get_int(0, 1), False)]
    if layer.type in _WEIGHTLESS:
        return []
    raise ModelFilesError(f"layer {layer.name}: unknown weight layout of layer type {layer.type}")


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise ModelFilesError(
                f"{self.source}: truncated: {what} needs {size} bytes at offset {self.pos}, file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def blob(self, count: int, tagged: bool, what: str) -> np.ndarray:
        if count < 0:
            raise ModelFilesError(f"{self.source}: {what}: negative size {count} in the param file")
        tag = struct.unpack("<I", self.take(4, what))[0] if tagged else 0
        if tag == TAG_FP16:
            padded = (count * 2 + 3) // 4 * 4  # ncnn pads fp16 payloads to 4 bytes
            return np.frombuffer(self.take(padded, what), "<f2", count).astype(np.float32)
        if tag in (0, TAG_FP32):
            return np.frombuffer(self.take(count * 4, what), "<f4").astype(np.float32)
        kind = "int8" if tag == TAG_INT8 else f"unknown (0x{tag:08X})"
        raise ModelFilesError(f"{self.source}: {what}: {kind} weight storage is not supported")


def iter_weights(param: NcnnParam, bin_path: PathLike) -> Iterator[tuple[NcnnLayer, tuple[np.ndarray, ...]]]:
    """Walk the layers in order, yielding each layer that has weights with its flat float32 arrays.

    After the last layer the whole file must have been consumed: leftover bytes mean the `.bin` does
    not belong to this `.param` (a size mismatch that would otherwise go unnoticed).
    """
    try:
        data = Path(bin_path).read_bytes()
    except OSError as exc:
        raise ModelFilesError(f"cannot read ncnn weight file {bin_path}: {exc}") from exc
    reader = _Reader(data, str(bin_path))
    for layer in param.layers:
        specs = _blob_specs(layer)
        if specs:
            what = f"layer {layer.name} blob"
            yield layer, tuple(reader.blob(n, tagged, f"{what} {i}") for i, (n, tagged) in enumerate(specs))
    if reader.pos != len(data):
        raise ModelFilesError(f"{bin_path}: {len(data) - reader.pos} bytes left over after the last layer")


def read_weights(param: NcnnParam, bin_path: PathLike) -> dict[str, tuple[np.ndarray, ...]]:
    """Every layer's weight arrays by layer name (in layer order), the whole file checked."""
    return {layer.name: arrays for layer, arrays in iter_weights(param, bin_path)}


LayerWeights = dict[str, tuple[np.ndarray, ...]]  # flat float32 arrays per layer name, as `read_weights` gives


def build_module(
    param_path: PathLike,
    bin_path: PathLike,
    build: Callable[[NcnnParam, LayerWeights], tuple[_Module, dict[str, torch.Tensor]]],
    network: str,
) -> _Module:
    """Parse `param_path`, read `bin_path`, let `build` make the module and its state dict, load it (eval mode).

    Any mismatch between the files and the network `build` expects is a `ModelFilesError` naming the file.
    """
    param = NcnnParam.load(param_path)
    try:
        net, state = build(param, read_weights(param, bin_path))
        net.load_state_dict(state, strict=True)
    except (ValueError, KeyError, IndexError, RuntimeError) as exc:
        raise ModelFilesError(f"{param_path}: not an {network} ncnn model: {exc}") from exc
    return net.eval()
