"""Read a TensorFlow Lite flatbuffer as a data-flow graph, so our own torch modules can take its weights.

The face stylizer ships only as `.tflite` (inside MediaPipe `.task` zips). We never execute this graph: the
networks are hand-written modules (`networks/face_encoder.py`, `networks/blazestylegan.py`) that *walk* it at
load time — from the input tensor, op by op along the data flow — checking that every op is the one the
architecture expects and taking its constants. Walking the data flow rather than the op list matters: the
three stylizer files hold the same network with their ops in different orders (#8).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import tflite
from flatbuffers import flexbuffers
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions

from shared.errors import ModelFilesError

_OP_NAMES = {value: name for name, value in vars(BuiltinOperator).items() if not name.startswith("_")}
_OPTION_NAMES = {value: name for name, value in vars(BuiltinOptions).items() if not name.startswith("_")}
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 9: np.int8, 3: np.uint8}
_PADDING = {0: "SAME", 1: "VALID"}


@dataclass(frozen=True)
class Op:
    index: int
    kind: str  # builtin operator name ("CONV_2D") or the custom code ("FusedBatchNormV3")
    inputs: tuple[int, ...]  # tensor indices; -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> int:
        return self.outputs[0]


class GraphMismatch(ModelFilesError):
    """The file does not hold the network our module expects (a different or damaged model)."""


class TfliteGraph:
    """The main subgraph of a `.tflite` model: ops, tensors, constants, producers and consumers."""

    def __init__(self, data: bytes, *, source: str = "model") -> None:
        self.source = source
        try:
            self._model = tflite.Model.GetRootAsModel(data, 0)
            self._graph = self._model.Subgraphs(0)
            self.ops = [self._read_op(self._graph, i) for i in range(self._graph.OperatorsLength())]
        except Exception as exc:  # a flatbuffer that does not parse surfaces as assorted struct errors
            raise ModelFilesError(f"{source} is not a readable TFLite model ({exc})") from exc
        self._consumers: dict[int, list[Op]] = {}
        self._producer: dict[int, Op] = {}
        for op in self.ops:
            for tensor in dict.fromkeys(op.inputs):  # an op reading a tensor twice is one consumer
                self._consumers.setdefault(tensor, []).append(op)
            for tensor in op.outputs:
                self._producer[tensor] = op
        self.input = int(self._graph.Inputs(0))
        self.output = int(self._graph.Outputs(0))

    @classmethod
    def from_task(cls, path: Path, member: str = "face_stylizer.tflite") -> TfliteGraph:
        """A MediaPipe `.task` file is a zip of models; read one member without unpacking it to disk."""
        try:
            with zipfile.ZipFile(path) as archive:
                data = archive.read(member)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelFilesError(f"cannot read {member} from {path.name} ({exc}): run `make models`") from exc
        return cls(data, source=f"{path.name}:{member}")

    # --- tensors ---

    def shape(self, tensor: int) -> tuple[int, ...]:
        t = self._graph.Tensors(tensor)
        return tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def name(self, tensor: int) -> str:
        name: bytes = self._graph.Tensors(tensor).Name()  # the flatbuffers reader is untyped
        return name.decode()

    def const(self, tensor: int) -> np.ndarray | None:
        """The tensor's constant value (a copy), or None when it is computed at run time."""
        return self._const_in(self._graph, tensor)

    def weight(self, op: Op, position: int) -> np.ndarray:
        """A constant input of `op`, or a clear error naming the op."""
        value = self.const(op.inputs[position])
        if value is None:
            raise self.mismatch(op, f"input {position} is not a constant")
        return value

    def _const_in(self, graph: Any, tensor: int) -> np.ndarray | None:
        t = graph.Tensors(tensor)
        buffer = self._model.Buffers(t.Buffer())
        if buffer is None or buffer.DataLength() == 0:
            return None
        dtype = _DTYPES.get(t.Type())
        if dtype is None:
            raise ModelFilesError(f"{self.source}: tensor {t.Name().decode()} has unsupported type {t.Type()}")
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape).copy()

    # --- data flow ---

    def producer(self, tensor: int) -> Op | None:
        return self._producer.get(tensor)

    def consumers(self, tensor: int) -> list[Op]:
        return self._consumers.get(tensor, [])

    def follow(self, tensor: int, kind: str, where: Callable[[Op], bool] | None = None) -> Op:
        """The one op of `kind` that reads `tensor` (and satisfies `where`); anything else is a mismatch."""
        found = [op for op in self.consumers(tensor) if op.kind == kind and (where is None or where(op))]
        if len(found) != 1:
            raise GraphMismatch(
                f"{self.source}: expected one {kind} reading tensor {self.name(tensor)!r}, found {len(found)}"
            )
        return found[0]

    def made_by(self, tensor: int, kind: str) -> Op:
        op = self.producer(tensor)
        if op is None or op.kind != kind:
            raise GraphMismatch(f"{self.source}: expected tensor {self.name(tensor)!r} to come from {kind}")
        return op

    def other_input(self, op: Op, tensor: int) -> int:
        """The input of a two-input op that is not `tensor`."""
        others = [t for t in op.inputs if t != tensor]
        if len(others) != 1:
            raise self.mismatch(op, "expected exactly two distinct inputs")
        return others[0]

    def mismatch(self, op: Op, why: str) -> GraphMismatch:
        return GraphMismatch(f"{self.source}: op {op.index} ({op.kind}) does not match the architecture: {why}")

    # --- the initialisation subgraph ---

    @cached_property
    def variable_initial_values(self) -> dict[str, np.ndarray]:
        """Resource variables (e.g. batch-norm running statistics) → the value the init subgraph assigns.

        Only used to show what the network would do with its stored running statistics (the trap in #8).
        """
        values: dict[str, np.ndarray] = {}
        for index in range(1, self._model.SubgraphsLength()):
            graph = self._model.Subgraphs(index)
            handles: dict[int, str] = {}
            for i in range(graph.OperatorsLength()):
                op = self._read_op(graph, i)
                if op.kind == "VAR_HANDLE":
                    handles[op.out] = _shared_name(op)
                elif op.kind == "ASSIGN_VARIABLE" and op.inputs[0] in handles:
                    value = self._const_in(graph, op.inputs[1])
                    if value is not None:
                        values[handles[op.inputs[0]]] = value
        return values

    def variable_name(self, tensor: int) -> str:
        """The shared name of the resource variable a READ_VARIABLE output was read from."""
        read = self.made_by(tensor, "READ_VARIABLE")
        return _shared_name(self.made_by(read.inputs[0], "VAR_HANDLE"))

    # --- parsing ---

    def _read_op(self, graph: Any, index: int) -> Op:
        raw = graph.Operators(index)
        code = self._model.OperatorCodes(raw.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == BuiltinOperator.CUSTOM:
            kind = code.CustomCode().decode()
            options = dict(flexbuffers.Loads(raw.CustomOptionsAsNumpy().tobytes())) if raw.CustomOptionsLength() else {}
        else:
            kind = _OP_NAMES.get(builtin, str(builtin))
            options = _builtin_options(raw)
        return Op(
            index=index,
            kind=kind,
            inputs=tuple(int(i) for i in raw.InputsAsNumpy()),
            outputs=tuple(int(i) for i in raw.OutputsAsNumpy()),
            options=options,
        )


def _shared_name(handle: Op) -> str:
    """A VAR_HANDLE's variable name (the flatbuffer hands strings over as bytes)."""
    name = handle.options.get("SharedName", b"")
    return name.decode() if isinstance(name, bytes) else str(name)


def _builtin_options(raw: Any) -> dict[str, Any]:
    """The op's builtin options table as a dict of its scalar fields ("StrideH": 2, "Padding": "SAME"…)."""
    option_type = raw.BuiltinOptionsType()
    if option_type == 0:
        return {}
    name = _OPTION_NAMES[option_type]
    cls = getattr(__import__(f"tflite.{name}", fromlist=[name]), name)
    table = raw.BuiltinOptions()
    options = cls()
    options.Init(table.Bytes, table.Pos)
    values: dict[str, Any] = {}
    for attr in dir(options):
        if (
            not attr[:1].isupper()
            or attr.startswith(("Init", "GetRootAs"))
            or attr.endswith(("Length", "AsNumpy", "IsNone"))
        ):
            continue
        try:
            value = getattr(options, attr)()
        except TypeError:  # vector accessors take an index
            continue
        values[attr] = _PADDING[value] if attr == "Padding" else value
    return values
