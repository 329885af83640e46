"""Read a network saved by dlib's `serialize(net, out)`, so our own torch modules can take its weights.

dlib writes a network as its C++ type nests, outermost first (dlib/dnn/core.h):

* `add_loss_layer`: int version 1, the loss's details, then the network under it;
* `add_layer`: int version (1–2; 2–3 right above the input layer), the network under it, *then* this
  layer's details, three bools and its bookkeeping tensors (x_grad, cached_output; v2 adds params_grad;
  above the input layer grad_final, and v3 a sample expansion factor). So the versions of the whole stack
  come first, then the input layer, then every layer's details from the input upwards;
* `add_tag_layer` and `add_skip_layer`: int version 1 and the network under them, nothing after.

Nothing in the stream says which of these comes next, so the reader needs the network's type: a `spec`,
its wrappers from the output down to the input as dlib's template nests them (see `read_network`). Each
layer's details start with a version string ("con_4", "affine_", ...) that we check, so a file holding any
other network fails with an error that names the file and the byte, instead of loading garbage.

Primitives (dlib/serialize.h): an integer is a control byte (bit 7: negative, bits 0–3: byte count, bits
4–6 zero) and that many little-endian magnitude bytes; a bool is ASCII '1' or '0'; a string is its length
(an integer) and its bytes; a float is `float_details` — mantissa then exponent, two integers,
value = mantissa·2^exponent (exponents 32000–32002 are ±inf and NaN). A tensor (dlib/cuda/tensor.h) is
int version 2, four sizes (num_samples, k, nr, nc) and their product of raw little-endian float32; an
`alias_tensor` (a view into a layer's parameter tensor) is int version 1 and its four sizes.

Over ~400 lines on purpose: one reader of one format, whose primitives and layer records only make sense
together; splitting it would scatter dlib's byte layout over several files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import ModelFilesError

_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}  # dlib's float_details markers
_CONV_MODE = 0  # dlib's layer_mode: CONV_MODE = 0 (per-channel), FC_MODE = 1 (per-element)
_FC_HAS_BIAS, _FC_NO_BIAS = 0, 1  # dlib's fc_bias_mode


class DlibFormatError(ModelFilesError):
    """The file is not the dlib network we expect (another network, another dlib format, or damaged)."""


class DlibReader:
    """dlib's serialization primitives over an in-memory byte string; every error names the source and byte."""

    def __init__(self, data: bytes, *, source: str = "model") -> None:
        self.data, self.source, self.position = data, source, 0

    def error(self, why: str) -> DlibFormatError:
        return DlibFormatError(f"{self.source}: {why} (at byte {self.position})")

    def _take(self, count: int, what: str) -> bytes:
        if count < 0 or self.position + count > len(self.data):
            raise self.error(f"file ends inside {what}")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def integer(self, *, signed: bool = True, what: str = "an integer") -> int:
        control = self._take(1, what)[0]
        if control & 0x70:
            raise self.error(f"bad control byte {control:#04x} for {what}")
        size, negative = control & 0x0F, bool(control & 0x80)
        if size > 8 or (negative and not signed):
            raise self.error(f"bad control byte {control:#04x} for {what}")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if negative else value

    def boolean(self, what: str = "a bool") -> bool:
        byte = self._take(1, what)
        if byte not in (b"0", b"1"):
            raise self.error(f"expected '0' or '1' for {what}, found {byte!r}")
        return byte == b"1"

    def string(self, what: str = "a string") -> str:
        length = self.integer(signed=False, what=f"the length of {what}")
        raw = self._take(length, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.error(f"{what} is not ASCII") from exc

    def real(self, what: str = "a float") -> float:
        # dlib also reads an older ASCII format, recognisable by bits 4–6 of its first byte; no file we read has it.
        if self.position < len(self.data) and self.data[self.position] & 0x70:
            raise self.error(f"{what} is in dlib's old text float format")
        mantissa = self.integer(what=f"the mantissa of {what}")
        exponent = self.integer(what=f"the exponent of {what}")
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        return math.ldexp(mantissa, exponent)

    def version(self, expected: Sequence[int], what: str) -> int:
        found = self.integer(what=f"the version of {what}")
        if found not in expected:
            raise self.error(f"{what} has version {found}, expected {' or '.join(map(str, expected))}")
        return found

    def tag(self, expected: str) -> None:
        """A layer's details start with a version string: its class name and format version."""
        start = self.position
        found = self.string(what=f"the version string of {expected}")
        if found != expected:
            self.position = start
            raise self.error(f"expected layer {expected!r}, found {found!r}")

    def _sizes(self, what: str) -> tuple[int, int, int, int]:
        sizes = tuple(self.integer(what=f"a size of {what}") for _ in range(4))
        if min(sizes) < 0:
            raise self.error(f"negative size in {what}")
        return sizes[0], sizes[1], sizes[2], sizes[3]

    def tensor(self, what: str = "a tensor") -> np.ndarray:
        """A `resizable_tensor` → float32 array of shape (num_samples, k, nr, nc)."""
        self.version((2,), what)
        shape = self._sizes(what)
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count, what), dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        """An `alias_tensor` (a view of a parameter tensor) → its shape."""
        self.version((1,), what)
        return self._sizes(what)

    def at_end(self) -> None:
        if self.position != len(self.data):
            raise self.error(f"{len(self.data) - self.position} unexpected bytes after the network")


# --- layers, as our modules take them (forward order) ---


@dataclass(frozen=True, eq=False)
class InputRgbImage:
    """`input_rgb_image_sized<NR, NC>`: feeds the network (pixel − mean)/256 per channel, pixels 0..255."""

    mean: tuple[float, float, float]  # red, green, blue
    rows: int
    cols: int


@dataclass(frozen=True, eq=False)
class Conv:
    weight: np.ndarray  # out × in × kh × kw (dlib's filter layout is torch's)
    bias: np.ndarray  # out
    stride: tuple[int, int]  # y, x
    padding: tuple[int, int]  # y, x: zeros on both sides


@dataclass(frozen=True, eq=False)
class Affine:
    """A fixed per-channel `x·gamma + beta` (what dlib turns a trained batch norm into for inference)."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True, eq=False)
class Relu:
    pass


@dataclass(frozen=True, eq=False)
class Pool:
    kind: str  # "max" or "avg"
    size: tuple[int, int]  # (0, 0): the whole input (dlib's avg_pool_everything)
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Tag:
    """`tagN`: marks the output of the layers below it for a later skip or add_prev."""

    id: int


@dataclass(frozen=True, eq=False)
class Skip:
    """`skipN`: the next layer reads tag N's output instead of the layer below."""

    tag: int


@dataclass(frozen=True, eq=False)
class AddPrev:
    """`add_prevN`: the layer below plus tag N's output; sizes that differ are zero-padded to the larger."""

    tag: int


@dataclass(frozen=True, eq=False)
class FullyConnected:
    weight: np.ndarray  # out × in (torch's layout; dlib stores in × out)
    bias: np.ndarray | None


@dataclass(frozen=True, eq=False)
class LossMetric:
    margin: float
    distance_threshold: float


Layer = InputRgbImage | Conv | Affine | Relu | Pool | Tag | Skip | AddPrev | FullyConnected | LossMetric


# --- layer details (dlib/dnn/layers.h, input.h, loss.h) ---


def _multipliers(reader: DlibReader, what: str) -> None:
    """Training-only learning-rate and weight-decay multipliers: read and dropped."""
    for _ in range(4):
        reader.real(f"a multiplier of {what}")


def _split(
    reader: DlibReader, params: np.ndarray, shapes: Sequence[tuple[int, int, int, int]], what: str
) -> list[np.ndarray]:
    sizes = [math.prod(shape) for shape in shapes]
    if sum(sizes) != params.size:
        raise reader.error(f"{what}: {params.size} parameters, its views need {sum(sizes)}")
    flat, offset = params.reshape(-1), 0
    views: list[np.ndarray] = []
    for shape, size in zip(shapes, sizes):
        views.append(flat[offset : offset + size].reshape(shape).copy())
        offset += size
    return views


def _read_con(reader: DlibReader) -> Conv:
    reader.tag("con_4")
    params = reader.tensor("con_ params")
    filters_count = reader.integer(what="con_ num_filters")
    rows, cols = reader.integer(what="con_ nr"), reader.integer(what="con_ nc")
    stride = (reader.integer(what="con_ stride_y"), reader.integer(what="con_ stride_x"))
    padding = (reader.integer(what="con_ padding_y"), reader.integer(what="con_ padding_x"))
    filters, biases = reader.alias("con_ filters"), reader.alias("con_ biases")
    _multipliers(reader, "con_")
    if filters[0] != filters_count or filters[2:] != (rows, cols) or biases != (1, filters_count, 1, 1):
        raise reader.error(f"con_: filter views {filters} and {biases} do not fit {filters_count} {rows}×{cols}")
    if min(stride) < 1 or min(padding) < 0:
        raise reader.error(f"con_: bad stride {stride} or padding {padding}")
    weight, bias = _split(reader, params, (filters, biases), "con_")
    return Conv(weight=weight, bias=bias.reshape(-1), stride=stride, padding=padding)


def _read_affine(reader: DlibReader) -> Affine:
    reader.tag("affine_")
    params = reader.tensor("affine_ params")
    gamma_shape, beta_shape = reader.alias("affine_ gamma"), reader.alias("affine_ beta")
    mode = reader.integer(what="affine_ mode")
    if mode != _CONV_MODE or gamma_shape != beta_shape or gamma_shape[::2] != (1, 1) or gamma_shape[3] != 1:
        raise reader.error(f"affine_: expected a per-channel (conv mode) layer, found mode {mode}, {gamma_shape}")
    gamma, beta = _split(reader, params, (gamma_shape, beta_shape), "affine_")
    return Affine(gamma=gamma.reshape(-1), beta=beta.reshape(-1))


def _read_relu(reader: DlibReader) -> Relu:
    reader.tag("relu_")
    return Relu()


def _read_pool(kind: str) -> Callable[[DlibReader], Pool]:
    def read(reader: DlibReader) -> Pool:
        reader.tag(f"{kind}_pool_2")
        size = (reader.integer(what="pool nr"), reader.integer(what="pool nc"))
        stride = (reader.integer(what="pool stride_y"), reader.integer(what="pool stride_x"))
        padding = (reader.integer(what="pool padding_y"), reader.integer(what="pool padding_x"))
        if min(size) < 0 or min(stride) < 1 or min(padding) < 0:
            raise reader.error(f"{kind}_pool_: bad size {size}, stride {stride} or padding {padding}")
        return Pool(kind=kind, size=size, stride=stride, padding=padding)

    return read


def _read_add_prev(tag: int) -> Callable[[DlibReader], AddPrev]:
    def read(reader: DlibReader) -> AddPrev:
        reader.tag("add_prev_")  # the tag it adds is in the C++ type only, so it comes from the spec
        return AddPrev(tag=tag)

    return read


def _read_fc(reader: DlibReader) -> FullyConnected:
    reader.tag("fc_2")
    outputs = reader.integer(signed=False, what="fc_ num_outputs")
    inputs = reader.integer(signed=False, what="fc_ num_inputs")
    params = reader.tensor("fc_ params")
    weights, biases = reader.alias("fc_ weights"), reader.alias("fc_ biases")
    bias_mode = reader.integer(what="fc_ bias_mode")
    _multipliers(reader, "fc_")
    if weights != (inputs, outputs, 1, 1) or bias_mode not in (_FC_HAS_BIAS, _FC_NO_BIAS):
        raise reader.error(f"fc_: weight view {weights} and bias mode {bias_mode} do not fit {inputs}→{outputs}")
    if bias_mode == _FC_NO_BIAS:
        (weight,) = _split(reader, params, (weights,), "fc_")
        return FullyConnected(weight=weight.reshape(inputs, outputs).T.copy(), bias=None)
    if biases != (1, outputs, 1, 1):
        raise reader.error(f"fc_: bias view {biases} does not fit {outputs} outputs")
    weight, bias = _split(reader, params, (weights, biases), "fc_")
    return FullyConnected(weight=weight.reshape(inputs, outputs).T.copy(), bias=bias.reshape(-1))


def _read_input_rgb(reader: DlibReader) -> InputRgbImage:
    reader.tag("input_rgb_image_sized")
    mean = (reader.real("avg_red"), reader.real("avg_green"), reader.real("avg_blue"))
    rows = reader.integer(signed=False, what="input rows")
    cols = reader.integer(signed=False, what="input cols")
    return InputRgbImage(mean=mean, rows=rows, cols=cols)


def _read_loss_metric(reader: DlibReader) -> LossMetric:
    reader.tag("loss_metric_2")
    return LossMetric(margin=reader.real("loss margin"), distance_threshold=reader.real("loss dist_thresh"))


_DETAILS: dict[str, Callable[[DlibReader], Layer]] = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": _read_pool("max"),
    "avg_pool": _read_pool("avg"),
    "fc": _read_fc,
}
_INPUTS: dict[str, Callable[[DlibReader], Layer]] = {"input_rgb_image_sized": _read_input_rgb}
_LOSSES: dict[str, Callable[[DlibReader], Layer]] = {"loss_metric": _read_loss_metric}
_NUMBERED = re.compile(r"(tag|skip|add_prev)(\d+)")


@dataclass(frozen=True)
class _Step:
    """One wrapper of the network's C++ type: how its header and trailer read."""

    kind: str  # "loss", "layer", "tag", "skip" or "input"
    name: str
    read: Callable[[DlibReader], Layer] | None = None
    number: int = 0


def _steps(spec: Sequence[str]) -> list[_Step]:
    steps: list[_Step] = []
    for position, name in enumerate(spec):
        numbered = _NUMBERED.fullmatch(name)
        last = position == len(spec) - 1
        if name in _LOSSES and position == 0:
            steps.append(_Step("loss", name, _LOSSES[name]))
        elif name in _INPUTS and last:
            steps.append(_Step("input", name, _INPUTS[name]))
        elif name in _DETAILS and not last:
            steps.append(_Step("layer", name, _DETAILS[name]))
        elif numbered and numbered[1] == "add_prev" and not last:
            steps.append(_Step("layer", name, _read_add_prev(int(numbered[2]))))
        elif numbered and not last and spec[position + 1] not in _INPUTS:
            # (a tag right on the input layer has its own format, which no network here uses)
            steps.append(_Step(numbered[1], name, number=int(numbered[2])))
        else:
            raise ValueError(f"spec entry {position} ({name!r}) is not supported there")
    if not steps or steps[-1].kind != "input":
        raise ValueError("a spec ends with its input layer")
    return steps


def read_network(data: bytes, spec: Sequence[str], *, source: str = "model") -> list[Layer]:
    """Parse a whole serialized network of type `spec` → its layers in forward order (input first, loss last).

    `spec` lists the C++ type's wrappers from the output down to the input, e.g. `loss_metric<fc<relu<
    con<input_rgb_image_sized>>>>` is ("loss_metric", "fc", "relu", "con", "input_rgb_image_sized"); tags,
    skips and add_prevs are written "tag1", "skip1", "add_prev2". Raises `DlibFormatError` on anything else.
    """
    steps = _steps(spec)
    reader = DlibReader(data, source=source)
    loss: Layer | None = None
    versions: dict[int, int] = {}
    # Headers, from the output down: versions (and the loss's details, which precede its network).
    for index, step in enumerate(steps[:-1]):
        if step.kind == "loss":
            reader.version((1,), "add_loss_layer")
            assert step.read is not None
            loss = step.read(reader)
        elif step.kind == "layer":
            above_input = steps[index + 1].kind == "input"
            versions[index] = reader.version((2, 3) if above_input else (1, 2), f"add_layer ({step.name})")
        else:
            reader.version((1,), f"add_{step.kind}_layer ({step.name})")
    input_step = steps[-1]
    assert input_step.read is not None
    layers: list[Layer] = [input_step.read(reader)]
    # Trailers, from the input up: each layer's details and the bookkeeping dlib saves with it.
    for index in range(len(steps) - 2, -1, -1):
        step = steps[index]
        if step.kind == "tag":
            layers.append(Tag(step.number))
        elif step.kind == "skip":
            layers.append(Skip(step.number))
        elif step.kind == "layer":
            assert step.read is not None
            layers.append(step.read(reader))
            _bookkeeping(reader, versions[index], steps[index + 1].kind == "input")
    if loss is not None:
        layers.append(loss)
    reader.at_end()
    return layers


def _bookkeeping(reader: DlibReader, version: int, above_input: bool) -> None:
    """What `add_layer` saves after its details: training state we read past."""
    for what in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        reader.boolean(what)
    tensors = 3 if above_input or version == 2 else 2  # x_grad, cached_output (+ grad_final or params_grad)
    for _ in range(tensors):
        reader.tensor("a layer's saved state")
    if above_input and version == 3:
        reader.integer(signed=False, what="sample_expansion_factor")


def load_network(path: Path, spec: Sequence[str]) -> list[Layer]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFilesError(f"cannot read {path.name} ({exc}): run `make models`") from exc
    return read_network(data, spec, source=path.name)
