"""`GraphBuilder`: a thin, name-safe layer over `onnx.helper` for writing graphs by hand.

* Every value name is unique across the whole model, subgraphs included (ONNX wants single assignment, and a
  subgraph must not shadow an outer name); `fresh(hint)` hands out `hint`, `hint_1`, `hint_2`, ...
* Initializers and constants always live in the *root* graph, so Scan bodies read weights from the outer
  scope instead of copying them; float arrays are stored as float32.
* Opset: `OPSET` = 21 (ai.onnx) with IR version 10, the newest pair that onnxruntime 1.20 (the oldest
  version rnnserve accepts) runs. The graphs need nothing newer than opset 18 (`Split(num_outputs)`, `Mish`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
IR_VERSION = 10
PRODUCER = "rnnserve"

Dim = int | str | None  # static size, symbolic name, or unknown


class _Names:
    """The set of value names used in one model (root graph and every subgraph)."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._counts: dict[str, int] = {}

    def fresh(self, hint: str) -> str:
        name = hint
        while name in self._used:
            count = self._counts.get(hint, 0) + 1
            self._counts[hint] = count
            name = f"{hint}_{count}"
        self._used.add(name)
        return name

    def claim(self, name: str) -> str:
        if name in self._used:
            raise ValueError(f"graph value name {name!r} is already used")
        self._used.add(name)
        return name


class GraphBuilder:
    """Collects nodes, inputs, outputs and (at the root) initializers of one ONNX graph."""

    def __init__(self, name: str, *, opset: int = OPSET, _parent: GraphBuilder | None = None) -> None:
        self.name = name
        self.opset = opset
        self._root: GraphBuilder = _parent._root if _parent is not None else self
        self._names: _Names = _parent._names if _parent is not None else _Names()
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._constants: dict[tuple[Any, ...], str] = {}
        self._reserved: set[str] = set()

    # ---- names and values ------------------------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        """A new unique value name based on `hint`."""
        return self._names.fresh(hint)

    def initializer(self, array: np.ndarray, hint: str) -> str:
        """Store `array` as a root-graph initializer (floats as float32) and return its name."""
        value = np.asarray(array)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32)
        name = self.fresh(hint)
        self._root._initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def constant(self, value: float | int | bool | Sequence[float] | Sequence[int], dtype: Any = np.float32) -> str:
        """A small shared constant (scalar or 1-D), stored once per model."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        root = self._root
        if key not in root._constants:
            root._constants[key] = self.initializer(array, f"const_{array.dtype.name}")
        return root._constants[key]

    def scalar(self, value: float) -> str:
        """A float32 scalar constant."""
        return self.constant(value, np.float32)

    def ints(self, values: Iterable[int]) -> str:
        """A 1-D int64 constant (axes, shapes, split sizes)."""
        return self.constant(list(values), np.int64)

    # ---- nodes ------------------------------------------------------------------------------------------------

    def node(
        self, op_type: str, inputs: Sequence[str], n_outputs: int = 1, *, hint: str | None = None, **attrs: Any
    ) -> list[str]:
        """Add one node; returns its output names (fresh, from `hint` or the op type)."""
        base = hint or op_type.lower()
        outputs = [self.fresh(base) for _ in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=self.fresh(f"n_{base}"), **attrs))
        return outputs

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs: Any) -> str:
        """Add a single-output node and return its output name."""
        return self.node(op_type, inputs, 1, hint=hint, **attrs)[0]

    def reserve(self, name: str) -> str:
        """Claim an exact name now (a graph output's), so that no generated name takes it; `identity` fills it."""
        self._reserved.add(self._names.claim(name))
        return name

    def identity(self, value: str, name: str) -> str:
        """Copy `value` into the exact name `name` (reserved earlier, or claimed now)."""
        if name in self._reserved:
            self._reserved.remove(name)
        else:
            self._names.claim(name)
        self.nodes.append(helper.make_node("Identity", [value], [name], name=self.fresh("n_id")))
        return name

    # ---- graph inputs and outputs -----------------------------------------------------------------------------

    def add_input(self, name: str, elem_type: int, shape: Sequence[Dim] | None, *, exact: bool = True) -> str:
        """Declare a graph input; `exact` claims `name` as is (graph I/O), else a fresh name from it."""
        value = self._names.claim(name) if exact else self.fresh(name)
        self.inputs.append(helper.make_tensor_value_info(value, elem_type, None if shape is None else list(shape)))
        return value

    def add_output(self, value: str, elem_type: int, shape: Sequence[Dim] | None = None) -> None:
        """Declare `value` a graph output (its shape may be left to shape inference)."""
        self.outputs.append(helper.make_tensor_value_info(value, elem_type, None if shape is None else list(shape)))

    # ---- assembling ---------------------------------------------------------------------------------------------

    def subgraph(self, name: str) -> GraphBuilder:
        """A builder for a control-flow body (Scan) sharing this model's names and initializers."""
        return GraphBuilder(name, opset=self.opset, _parent=self)

    def graph(self) -> onnx.GraphProto:
        initializers = self._initializers if self._root is self else []
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, initializer=initializers)

    def model(self, *, doc_string: str = "") -> onnx.ModelProto:
        if self._root is not self:
            raise ValueError("only the root graph builder makes a model")
        from rnnserve import __version__

        model = helper.make_model(
            self.graph(),
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name=PRODUCER,
            producer_version=__version__,
            doc_string=doc_string,
        )
        model.ir_version = IR_VERSION
        return model


ELEM_TYPES: dict[str, int] = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "bool": TensorProto.BOOL}


def elem_type(dtype: str) -> int:
    """The ONNX element type of a signature dtype name."""
    try:
        return ELEM_TYPES[dtype]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {dtype!r}; expected one of {sorted(ELEM_TYPES)}") from None
