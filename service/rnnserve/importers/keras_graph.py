"""Read the graph of a Keras model config: who calls what, in either file generation.

* Sequential (Keras 3 and Keras 2): a chain; the input comes from the first InputLayer, or from
  `build_input_shape` / the first layer's `batch_input_shape`.
* Functional, Keras 3 form: `inbound_nodes[0] = {"args": [...], "kwargs": {...}}` with `__keras_tensor__` refs;
  `kwargs.initial_state` and `kwargs.mask` are tensor refs; masks are explicit `NotEqual`/`Any` op nodes,
  which are parsed into `MaskExpr`s here (they never become layers).
* Functional, Keras 2 form: `inbound_nodes = [[[layer, node, index, kwargs], ...]]`; the tensors after the
  first one are the initial states; masks are implicit.

Everything read here is untrusted: every structural surprise is a `ModelFileError`, every valid but
unsupported construct (shared layers, extra call arguments, ops that compute data) an `UnsupportedLayer`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.importers.jsonish import array, is_index, is_number, mapping, short
from rnnserve.importers.keras_layers import describe, supported_class, unsupported_class
from rnnserve.kinds import find_kind, get_kind
from rnnserve.spec import TensorRef

MASK_OPS = frozenset({"NotEqual", "Any"})
_KERAS_TENSOR = "__keras_tensor__"


def _is_input(class_name: str) -> bool:
    """Whether a config entry is a model input (InputLayer) rather than a layer."""
    kind = find_kind(class_name)
    return kind is not None and kind.model_input


@dataclass(frozen=True)
class MaskExpr:
    """A timestep mask computed from a tensor: `source != value` (Embedding), or `any(source != value, -1)`."""

    kind: str  # "not_equal" | "any_not_equal"
    source: TensorRef
    value: float

    def __str__(self) -> str:
        inner = f"not_equal({self.source.layer}[{self.source.index}], {self.value!r})"
        return f"any({inner}, axis=-1)" if self.kind == "any_not_equal" else inner


@dataclass
class Call:
    """One application of a (non-input) layer, before its config is normalised."""

    class_name: str
    name: str
    config: Mapping[str, Any]
    inputs: tuple[TensorRef, ...]
    initial_state: tuple[TensorRef, ...] = ()
    # Keras 3 Functional only: the mask the layer was called with (None = no mask).
    mask: MaskExpr | None = None


@dataclass
class Graph:
    inputs: list[tuple[str, Mapping[str, Any]]]  # (InputLayer name, InputLayer config), model input order
    calls: list[Call]  # config order (not necessarily topological)
    outputs: list[TensorRef] | None  # None: every output of the last call (Sequential)
    output_names: list[str] | None = None  # given by the config (dict outputs), else derived later
    explicit_masks: bool = False  # Keras 3 Functional: `Call.mask` states what Keras applies
    index: dict[str, int] = field(default_factory=dict)  # layer name -> position in the config


def read_graph(model_config: Any) -> tuple[str, Graph]:
    """`(model class, graph)` of a model config as stored (`{"class_name", "config", ...}`)."""
    root = mapping(model_config, "the model config")
    class_name = root.get("class_name")
    config = root.get("config")
    if class_name == "Sequential":
        return "Sequential", _sequential(config)
    if class_name in ("Functional", "Model"):
        return "Functional", _functional(mapping(config, "the Functional model config"))
    raise UnsupportedLayer(
        f"the model has class {short(class_name)}; rnnserve imports Sequential and Functional models "
        "(subclassed models store no layer graph)"
    )


# ---- Sequential ------------------------------------------------------------------------------------------------


def _sequential(config: Any) -> Graph:
    layers = config if isinstance(config, list) else mapping(config, "the Sequential config").get("layers")
    entries = [_layer_entry(e, i) for i, e in enumerate(array(layers, "the Sequential layers"))]
    if entries and _is_input(entries[0][0]):
        input_name, input_config = entries[0][1], entries[0][2]
        entries = entries[1:]
    elif entries:
        input_name, input_config = _synthesised_input(config, entries[0])
    else:
        raise ModelFileError("the Sequential model has no layers")
    if not entries:
        raise ModelFileError("the Sequential model has no layers after its input")
    calls, previous = [], TensorRef(input_name)
    for class_name, name, layer_config in entries:
        if _is_input(class_name):
            raise UnsupportedLayer(f"the Sequential model has a second InputLayer {name!r}")
        if not supported_class(class_name):
            raise unsupported_class(name, class_name)
        calls.append(Call(class_name, name, layer_config, (previous,)))
        previous = TensorRef(name)
    graph = Graph([(input_name, input_config)], calls, None)
    _index_names(graph)
    return graph


def _synthesised_input(config: Any, first: tuple[str, str, Mapping[str, Any]]) -> tuple[str, Mapping[str, Any]]:
    """The input of a Sequential without an InputLayer, as Keras 2 would synthesise it (`<first>_input`)."""
    _, name, layer_config = first
    shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
    if shape is None and isinstance(config, Mapping):
        shape = config.get("build_input_shape")
    if shape is None:
        raise ModelFileError("the Sequential model was never built: its config gives no input shape")
    return f"{name}_input", {"batch_shape": shape, "dtype": layer_config.get("dtype")}


# ---- Functional ------------------------------------------------------------------------------------------------


def _functional(config: Mapping[str, Any]) -> Graph:
    entries = array(config.get("layers"), "the Functional layers")
    inputs: dict[str, Mapping[str, Any]] = {}
    ops: dict[str, tuple[str, Mapping[str, Any], Any]] = {}
    nodes: list[tuple[str, str, Mapping[str, Any], Any]] = []
    names: list[str] = []
    keras3 = False
    for position, entry in enumerate(entries):
        class_name, name, layer_config = _layer_entry(entry, position)
        names.append(name)
        inbound = array(mapping(entry, "a layer").get("inbound_nodes", []), f"the inbound_nodes of {name!r}")
        if not supported_class(class_name) and class_name not in MASK_OPS:
            raise unsupported_class(name, class_name)
        if _is_input(class_name):
            inputs[name] = layer_config
        elif len(inbound) > 1:
            where = describe(name, class_name)
            raise UnsupportedLayer(f"{where} is called {len(inbound)} times; shared layers are not supported")
        elif inbound and class_name in MASK_OPS:
            ops[name] = (class_name, layer_config, inbound[0])
        elif inbound:
            nodes.append((class_name, name, layer_config, inbound[0]))
        keras3 = keras3 or (bool(inbound) and isinstance(inbound[0], Mapping))
    if ops and not keras3:
        raise ModelFileError("a Keras 2 style model config holds Keras 3 op nodes")
    masks = _MaskResolver(ops)
    calls = [_call(class_name, name, cfg, node, masks) for class_name, name, cfg, node in nodes]
    input_refs, _ = _endpoints(config.get("input_layers"), "input_layers")
    for ref in input_refs:
        if ref.layer not in inputs:
            raise ModelFileError(f"input_layers names {ref.layer!r}, which is not an InputLayer")
    outputs, output_names = _endpoints(config.get("output_layers"), "output_layers")
    for ref in outputs:
        masks.forbid_data_use(ref)
    graph = Graph([(r.layer, inputs[r.layer]) for r in input_refs], calls, outputs, output_names, keras3)
    _index_names(graph, names)
    return graph


def _call(class_name: str, name: str, config: Mapping[str, Any], node: Any, masks: _MaskResolver) -> Call:
    where = describe(name, class_name)
    if isinstance(node, Mapping):
        main, initial_state, mask = _keras3_node(class_name, node, where)
        call = Call(class_name, name, config, (main,), initial_state, masks.resolve(mask, where))
    else:
        main, initial_state = _keras2_node(class_name, node, where)
        call = Call(class_name, name, config, (main,), initial_state)
    for ref in (*call.inputs, *call.initial_state):
        masks.forbid_data_use(ref)
    return call


def _keras3_node(class_name: str, node: Mapping[str, Any], where: str) -> tuple[TensorRef, tuple[TensorRef, ...], Any]:
    """(main input, initial states, mask value) of a Keras 3 `{"args", "kwargs"}` node."""
    args = array(node.get("args", []), f"{where}: inbound node args")
    kwargs = dict(mapping(node.get("kwargs", {}), f"{where}: inbound node kwargs"))
    params = get_kind(class_name).call_params
    if len(args) > len(params):
        raise UnsupportedLayer(f"{where}: called with {len(args)} positional arguments; it takes {len(params)}")
    for param, value in zip(params, args, strict=False):
        if param in kwargs:
            raise ModelFileError(f"{where}: call argument {param!r} is given twice")
        kwargs[param] = value
    main = _keras3_refs(kwargs.pop(params[0], None), f"{where}: its input")
    if len(main) != 1:
        raise UnsupportedLayer(f"{where}: called on {len(main)} tensors; rnnserve supports one input per layer")
    initial_state = _keras3_refs(kwargs.pop("initial_state", None), f"{where}: its initial_state")
    mask = kwargs.pop("mask", None)
    _check_training(kwargs.pop("training", None), where)
    if kwargs:
        raise UnsupportedLayer(f"{where}: call argument {sorted(kwargs)[0]!r} is not supported")
    return main[0], tuple(initial_state), mask


def _keras2_node(class_name: str, node: Any, where: str) -> tuple[TensorRef, tuple[TensorRef, ...]]:
    """(main input, initial states) of a Keras 2 `[[layer, node, index, kwargs], ...]` node."""
    refs = []
    for item in array(node, f"{where}: inbound node"):
        item = array(item, f"{where}: inbound tensor")
        if len(item) not in (3, 4) or not isinstance(item[0], str):
            raise ModelFileError(f"{where}: malformed inbound tensor {short(item)}")
        kwargs = mapping(item[3] if len(item) == 4 else {}, f"{where}: call kwargs")
        for key, value in kwargs.items():
            if key == "training":
                _check_training(value, where)
            elif not (key == "mask" and value is None):
                raise UnsupportedLayer(f"{where}: call argument {key!r} is not supported")
        refs.append(_history(item[0], item[1], item[2], where))
    if not refs:
        raise ModelFileError(f"{where}: its inbound node lists no tensor")
    if len(refs) > 1 and not get_kind(class_name).takes_initial_state:
        raise UnsupportedLayer(f"{where}: called on {len(refs)} tensors; rnnserve supports one input per layer")
    return refs[0], tuple(refs[1:])


def _keras3_refs(value: Any, where: str) -> list[TensorRef]:
    """Tensor refs in a Keras 3 call argument: one `__keras_tensor__`, a list of them, or None."""
    if value is None:
        return []
    items = _flat_tensors(value) if isinstance(value, list) else [value]
    refs = []
    for item in items:
        if not (isinstance(item, Mapping) and item.get("class_name") == _KERAS_TENSOR):
            raise UnsupportedLayer(f"{where}: {short(item)} is not a tensor of the model")
        history = array(mapping(item.get("config"), where).get("keras_history"), f"{where}: keras_history")
        if len(history) != 3:
            raise ModelFileError(f"{where}: malformed keras_history {short(history)}")
        refs.append(_history(history[0], history[1], history[2], where))
    return refs


def _flat_tensors(items: list[Any]) -> list[Any]:
    """The tensors of a (possibly nested) list, in order: stacked cells' initial_state nests an LSTM cell's [h, c]."""
    flat: list[Any] = []
    for item in items:
        flat += _flat_tensors(item) if isinstance(item, list) else [item]
    return flat


def _history(layer: Any, node_index: Any, tensor_index: Any, where: str) -> TensorRef:
    if not isinstance(layer, str) or not is_index(node_index) or not is_index(tensor_index):
        raise ModelFileError(f"{where}: malformed tensor reference {short([layer, node_index, tensor_index])}")
    if node_index != 0:
        raise UnsupportedLayer(f"{where}: reads call {node_index} of layer {layer!r}; shared layers are not supported")
    return TensorRef(layer, tensor_index)


def _check_training(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise UnsupportedLayer(f"{where}: call argument training={short(value)} is not supported")


def _endpoints(value: Any, key: str) -> tuple[list[TensorRef], list[str] | None]:
    """Refs of `input_layers`/`output_layers`: one triple, a list of triples, or a dict name -> triple."""
    names: list[str] | None = None
    if isinstance(value, Mapping):
        names = [str(k) for k in value]
        triples = list(value.values())
    elif isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        triples = [value]
    else:
        triples = _flat_triples(array(value, key))
    if not triples:
        raise ModelFileError(f"the model config lists no {key}")
    refs = []
    for triple in triples:
        if not isinstance(triple, list) or len(triple) != 3:
            raise ModelFileError(f"{key}: malformed entry {short(triple)}")
        refs.append(_history(triple[0], triple[1], triple[2], key))
    return refs, names


def _flat_triples(items: list[Any]) -> list[Any]:
    """Keras 3 keeps the nesting of a model's outputs: an LSTM cell's `[h, c]` among stacked cells' returned states
    is a nested list of triples; the outputs are its leaves in order."""
    flat: list[Any] = []
    for item in items:
        nested = isinstance(item, list) and bool(item) and all(isinstance(i, list) for i in item)
        flat += _flat_triples(item) if nested else [item]
    return flat


# ---- mask op nodes (Keras 3) -----------------------------------------------------------------------------------


class _MaskResolver:
    """Turns the `NotEqual`/`Any` op nodes that build a mask into `MaskExpr`s; refuses any other use of them."""

    def __init__(self, ops: Mapping[str, tuple[str, Mapping[str, Any], Any]]) -> None:
        self._ops = ops

    def forbid_data_use(self, ref: TensorRef) -> None:
        if ref.layer in self._ops:
            raise unsupported_class(ref.layer, self._ops[ref.layer][0])

    def resolve(self, mask: Any, where: str) -> MaskExpr | None:
        if mask is None:
            return None
        refs = _keras3_refs(mask, f"{where}: its mask")
        if len(refs) != 1:
            raise UnsupportedLayer(f"{where}: called with {len(refs)} mask tensors")
        op = self._ops.get(refs[0].layer)
        if op is None:
            raise UnsupportedLayer(
                f"{where}: called with an explicit mask from {refs[0].layer!r}; rnnserve derives masks only from "
                "Embedding(mask_zero=True) and Masking (a request may pass its own mask instead)"
            )
        return self._expr(refs[0].layer, where)

    def _expr(self, op_name: str, where: str) -> MaskExpr:
        class_name, config, node = self._ops[op_name]
        args = array(mapping(node, where).get("args", []), f"{where}: op {op_name!r} args")
        kwargs = mapping(mapping(node, where).get("kwargs", {}), f"{where}: op {op_name!r} kwargs")
        if class_name == "NotEqual" and len(args) == 2 and not kwargs:
            tensor, value = (args[0], args[1]) if is_number(args[1]) else (args[1], args[0])
            sources = _keras3_refs(tensor, where)
            if is_number(value) and len(sources) == 1:
                return MaskExpr("not_equal", sources[0], float(value))
        reduces_features = config.get("axis") in (-1, [-1]) and config.get("keepdims") is False
        if class_name == "Any" and len(args) == 1 and not kwargs and reduces_features:
            inner = _keras3_refs(args[0], where)
            if len(inner) == 1 and inner[0].layer in self._ops and self._ops[inner[0].layer][0] == "NotEqual":
                base = self._expr(inner[0].layer, where)
                return MaskExpr("any_not_equal", base.source, base.value)
        raise UnsupportedLayer(
            f"{where}: its mask comes from op {op_name!r} ({class_name}) in a form rnnserve cannot fold "
            "(it folds NotEqual(x, c) from Embedding(mask_zero) and Any(NotEqual(x, c), axis=-1) from Masking)"
        )


# ---- small readers ---------------------------------------------------------------------------------------------


def _layer_entry(entry: Any, position: int) -> tuple[str, str, Mapping[str, Any]]:
    """(class, name, config) of a serialized layer in a model's `layers` list."""
    entry = mapping(entry, f"layer #{position}")
    class_name = entry.get("class_name")
    config = mapping(entry.get("config"), f"the config of layer #{position}")
    name = entry.get("name", config.get("name"))
    if not isinstance(class_name, str) or not class_name:
        raise ModelFileError(f"layer #{position} has no class_name")
    if not isinstance(name, str) or not name:
        raise ModelFileError(f"layer #{position} ({class_name}) has no name")
    return class_name, name, config


def _index_names(graph: Graph, names: Sequence[str] | None = None) -> None:
    """Record config positions and refuse duplicate layer names (they make every reference ambiguous)."""
    names = names if names is not None else [graph.inputs[0][0], *(c.name for c in graph.calls)]
    for position, name in enumerate(names):
        if name in graph.index:
            raise ModelFileError(f"the model config has two layers named {name!r}")
        graph.index[name] = position
