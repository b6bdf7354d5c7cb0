"""`LayerKind`: everything rnnserve knows about one Keras layer class, and the registry of kinds by class name.

One module per kind (`service/rnnserve/kinds/gru.py`, ...) subclasses `LayerKind` and calls `register_kind(...)` at its
bottom, as converters are registered in sklearn-onnx. The importers, the numpy reference, the exporter, the
signature, the batcher and the data plane ask the record of a layer's class (`kind_of(layer)`) instead of
testing class names. The registry loads every module of `rnnserve.kinds` the first time it is asked, so a new
kind is one new module (or, in tests, one `register_kind` call).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.spec import LayerSpec, ModelSpec, StateSpec

if TYPE_CHECKING:  # the ONNX side is imported with the kind modules, not by the importers' reader process
    from rnnserve.export.builder import GraphBuilder
    from rnnserve.export.context import LayerCall, LayerResult
    from rnnserve.layers.model import Node

Shape = tuple[int | None, ...]  # None = not checked (an input dimension unknown at that point)
REQUIRED: Any = object()  # marks a config key without a default


@dataclass(frozen=True)
class MaskRule:
    """The Keras mask of one output of a layer, as implicit propagation gives it.

    `keep`: the mask of the layer's input; `none`: no mask; `not_equal`: `input != value` (Embedding mask_zero);
    `any_not_equal`: `any(input != value, axis=-1)` (Masking).
    """

    rule: str
    value: float = 0.0


KEEP_MASK = MaskRule("keep")
NO_MASK = MaskRule("none")


class LayerKind:
    """What rnnserve knows about one Keras layer class. The defaults describe a layer with no weights and no
    states that outputs one tensor of its input's size, passes its input's mask on and may be streamed; a
    `per_step` kind (a function of each timestep alone) needs only its `step_reference` and `convert` besides."""

    class_name: ClassVar[str] = ""
    # ---- config: normalisation (see rnnserve.kinds.config) ----------------------------------------------------
    defaults: ClassVar[Mapping[str, Any]] = {}  # every key of the normalised config, in order; REQUIRED: no default
    dropped: ClassVar[frozenset[str]] = frozenset()  # keys dropped besides the common ones (name, dtype, ...)
    activation_keys: ClassVar[tuple[str, ...]] = ()  # keys holding activation names (made canonical)
    # ---- how the layer is called in a model graph --------------------------------------------------------------
    call_params: ClassVar[tuple[str, ...]] = ("inputs", "training")  # positional parameters of Keras 3 `call`
    takes_initial_state: ClassVar[bool] = False
    per_step: ClassVar[bool] = False  # a function of each timestep alone (so TimeDistributed may wrap it)
    is_recurrent: ClassVar[bool] = False  # a cell run over time (states of its own): Bidirectional may wrap it
    model_input: ClassVar[bool] = False  # InputLayer: a model input, never a layer of the spec
    reads_token_ids: ClassVar[bool] = False  # its input holds integer ids (the model input becomes int64)
    # ---- masks, time and sessions ---------------------------------------------------------------------------
    uses_mask: ClassVar[bool] = False  # applies its input's mask (a Keras 3 config states that mask explicitly)
    streamable: ClassVar[bool] = True  # a session may feed it chunk by chunk (False when it mixes timesteps)
    stream_refusal: ClassVar[str] = ""  # why not, completing "model 'm' ..." (e.g. "has a Conv1D layer: ...")
    # ---- weights as stored in Keras files -------------------------------------------------------------------
    weight_directions: ClassVar[tuple[str, ...]] = ()  # name prefixes of its sublayers' weights (Bidirectional)

    def normalise(self, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
        """The normalised config (Keras 3 key names, every key, defaults filled in); refuses unknown keys."""
        from rnnserve.kinds.config import plain

        return plain(self, config, name, keras_version)

    # ---- weights and sizes ----------------------------------------------------------------------------------

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        """Weight name -> expected shape, in Keras creation order; `in_features` is the last axis of the input."""
        return {}

    def output_features(self, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
        """The last axis of each output (`[y]`, or `[y, *states]` with return_state)."""
        return [in_features]

    def vars_path(self, prefix: str) -> str:
        """Where a `.keras` archive keeps the layer's variables (under its group), `prefix` a weight direction."""
        return "vars"

    def stored_weight_names(self, paths: Sequence[str], names: Sequence[str]) -> list[str] | None:
        """The spec name of each weight a legacy `.h5` lists for the layer (`paths`, its `weight_names` in creation
        order; `names` the expected spec names), or None to match them by their last path component (and
        direction), as for every built-in layer."""
        return None

    # ---- outputs, states, wrapped layers --------------------------------------------------------------------

    def output_count(self, config: Mapping[str, Any]) -> int:
        """How many tensors the layer outputs."""
        return 1

    def recurrent_config(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The config holding the recurrent options (units, time_major, stateful, unroll, ...); None if none."""
        return None

    def inner(self, config: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
        """A wrapper's inner layer `(class_name, config)`; None for a plain layer."""
        return None

    def own_config(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """The config holding the layer's own arguments: a wrapper's inner layer's, else its own."""
        inner = self.inner(config)
        return config if inner is None else inner[1]

    def parts(self, config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        """Weight-name prefix -> the config holding the arguments of the weights under it (their regularizers and
        constraints, the dropout rates of their cell): `{"": own_config}` for one layer; a Bidirectional's
        directions (`forward`, `backward`), stacked cells' keys (`gru_cell`, ...), or both (`forward/gru_cell`)."""
        return {"": self.own_config(config)}

    def state_names(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The states the layer carries, relative to its name, in Keras order (`h`, `c`, `forward/h`, ...)."""
        return ()

    def states(self, layer: LayerSpec) -> list[StateSpec]:
        names = self.state_names(layer.config)
        if not names:
            return []
        rnn = self.recurrent_config(layer.config)
        units = int(rnn["units"]) if rnn is not None else 0
        return [StateSpec(f"{layer.name}/{s}", layer.name, units) for s in names]

    def output_mask(self, config: Mapping[str, Any], index: int) -> MaskRule:
        """The mask Keras attaches to output `index` (states have none)."""
        return KEEP_MASK if index == 0 else NO_MASK

    def reads_backwards(self, config: Mapping[str, Any]) -> bool:
        """Whether the layer reads time from the end (padding at the end of a sequence would come first), or
        may read past a step (a kind that mixes timesteps): then the batcher batches equal lengths only."""
        return not self.streamable

    def vocabulary(self, layer: LayerSpec) -> int | None:
        """How many token ids the layer accepts (Embedding: input_dim), None when it reads no ids."""
        return None

    # ---- numpy reference and ONNX ---------------------------------------------------------------------------

    def step_reference(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> Callable[[np.ndarray], np.ndarray]:
        """A `per_step` kind's numpy function of its input (`rnnserve.layers.core`), float64 in and out."""
        raise UnsupportedLayer(f"layer {name!r}: {self.class_name} is not a per-timestep layer")

    def reference(self, layer: LayerSpec) -> Node:
        """The numpy reference node of the layer (`rnnserve.layers.model`); a `per_step` kind's step_reference,
        passing the mask on, unless the kind says otherwise."""
        if self.per_step:
            from rnnserve.layers.model import MaskPreserving

            return MaskPreserving(self.step_reference(layer.config, layer.weights, layer.name))
        raise UnsupportedLayer(f"layer {layer.name!r}: class {layer.class_name!r} is not supported")

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        """The ONNX converter of the layer (registered in `rnnserve.export.registry` with the kind)."""
        raise UnsupportedLayer(
            f"no ONNX converter for Keras layer class {self.class_name!r}", layer_class=self.class_name
        )


def match_in_order(paths: Sequence[str], names: Sequence[str], what: str) -> list[str]:
    """`names` for a legacy `.h5`'s weight `paths` listed in creation order, each path ending in the last component
    of its name (`.../gru_cell/kernel:0` for `gru_cell/kernel`); ModelFileError when they do not line up."""
    bases = [p.rsplit("/", 1)[-1].split(":", 1)[0] for p in paths]
    if len(paths) != len(names) or any(n.rsplit("/", 1)[-1] != b for n, b in zip(names, bases, strict=True)):
        raise ModelFileError(f"{what} weights {list(paths)} do not match the cells' {list(names)} in order")
    return list(names)


_KINDS: dict[str, LayerKind] = {}
_loaded = False
_loading = threading.RLock()


def register_kind(kind: LayerKind, *, overwrite: bool = False) -> LayerKind:
    """Register `kind` under its `class_name` (and its converter in the export registry).

    A second kind for the same class raises `ValueError` unless `overwrite=True`.
    """
    name = kind.class_name
    if not name:
        raise ValueError(f"{type(kind).__name__} has no class_name")
    existing = _KINDS.get(name)
    if existing is not None and existing is not kind and not overwrite:
        raise ValueError(
            f"a layer kind for {name!r} is already registered ({type(existing).__module__}); "
            "pass overwrite=True to replace it"
        )
    _KINDS[name] = kind
    if not kind.model_input:
        from rnnserve.export.registry import register_converter

        register_converter(name, overwrite=True)(kind.convert)
    return kind


def unregister_kind(class_name: str) -> None:
    """Remove a kind (tests that register one of their own)."""
    from rnnserve.export import registry

    _KINDS.pop(class_name, None)
    registry._CONVERTERS.pop(class_name, None)


def load_kinds() -> None:
    """Import every module of `rnnserve.kinds` once (each registers its kind at its bottom). Thread-safe: a model
    loads in a worker thread, and no caller may see the registry half filled."""
    global _loaded
    if _loaded:
        return
    with _loading:
        if _loaded:
            return
        package = importlib.import_module("rnnserve.kinds")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"rnnserve.kinds.{module.name}")
        _loaded = True


def find_kind(class_name: str) -> LayerKind | None:
    """The kind of Keras class `class_name`, None when rnnserve has none."""
    kind = _KINDS.get(class_name)
    if kind is None and not _loaded:
        load_kinds()
        kind = _KINDS.get(class_name)
    return kind


def get_kind(class_name: str, name: str = "") -> LayerKind:
    """The kind of `class_name`; `UnsupportedLayer` naming the layer and the supported classes when none."""
    kind = find_kind(class_name)
    if kind is None:
        where = f"layer {name!r} has class" if name else "class"
        raise UnsupportedLayer(
            f"{where} {class_name!r}, which rnnserve does not support (supported: {', '.join(supported_classes())})",
            layer_class=class_name,
        )
    return kind


def kind_of(layer: LayerSpec) -> LayerKind:
    """The kind of a spec layer (its class was checked when the spec was imported)."""
    kind = find_kind(layer.class_name)
    if kind is None:
        raise UnsupportedLayer(
            f"layer {layer.name!r}: class {layer.class_name!r} is not supported", layer_class=layer.class_name
        )
    return kind


def registered_kinds() -> Mapping[str, LayerKind]:
    load_kinds()
    return dict(_KINDS)


def supported_classes() -> tuple[str, ...]:
    """Every class a model file may name: model inputs first, then layers, sorted."""
    kinds = registered_kinds()
    inputs = sorted(n for n, k in kinds.items() if k.model_input)
    return (*inputs, *sorted(n for n, k in kinds.items() if not k.model_input))


def layer_classes() -> frozenset[str]:
    """The classes that become layers of a spec (every kind but model inputs)."""
    return frozenset(n for n, k in registered_kinds().items() if not k.model_input)


def stream_refusal(spec: ModelSpec) -> str | None:
    """Why a session may not stream `spec` chunk by chunk (its first layer whose kind is not `streamable`),
    completing "model 'm' ..."; None when every layer may be streamed."""
    for layer in spec.layers:
        kind = kind_of(layer)
        if not kind.streamable:
            return kind.stream_refusal or f"has a layer {layer.name!r} ({layer.class_name}) that mixes timesteps"
    return None


def reads_backwards(spec: ModelSpec) -> bool:
    """Whether a layer of `spec` reads time from the end (padding at the end of a sequence would come first)."""
    return any(kind_of(layer).reads_backwards(layer.config) for layer in spec.layers)


def recurrent_kind(class_name: str, name: str = "") -> LayerKind:
    """The kind of a recurrent class (one that carries states on its own); ModelFileError otherwise."""
    kind = find_kind(class_name)
    if kind is None or not kind.is_recurrent:
        raise ModelFileError(f"layer {name!r}: {class_name!r} is not a recurrent layer class")
    return kind
