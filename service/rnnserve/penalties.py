"""What a model's regularizers and constraints say about its weights and its activity, as Keras computes them.

Keras keeps `*_regularizer` and `*_constraint` in the layer configs and uses them only in training (SEMANTICS §6).
rnnserve reports them (`GET /v1/models/{m}`, predict with `return_losses`):

* weight penalties: each regularized weight's `regularizer(w)`, what Keras lists in `model.losses` (L1, L2, L1L2,
  OrthogonalRegularizer; `rnnserve.modeling.regularizers`);
* constraints: whether each constrained weight satisfies its constraint (`rnnserve.modeling.constraints`), and by how
  much it misses at worst, in the constraint's own units: a norm above `max_value` (MaxNorm) or outside
  `[min_value, max_value]` (MinMaxNorm; `rate` only says how far an optimizer step projects), a norm away from 1
  (UnitNorm), a negative value (NonNeg). Within `CONSTRAINT_TOLERANCE` counts as satisfied: a weight that Keras'
  own projection produced in float32 has a unit norm to about 1e-7;
* activity penalties: `activity_regularizer(output) / output.shape[0]` for every output tensor of the layer (with
  `return_state`, the states too), summed, as Keras 3 and tf_keras 2 add them after `model(x)`.

A weight's regularizer and constraint sit in its layer's config (a wrapper's: in the wrapped layer's) under
`<weight>_regularizer` / `<weight>_constraint`, except `recurrent_kernel`, whose keys are `recurrent_*`. A
Bidirectional layer's `forward/` and `backward/` weights each take the wrapped layer's; stacked cells'
(`RNN(StackedRNNCells)`: `gru_cell/kernel`, `forward/gru_cell/kernel`) their own cell's (`LayerKind.parts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnserve.errors import InvalidArgument
from rnnserve.kinds import kind_of
from rnnserve.modeling import constraints as con
from rnnserve.modeling import regularizers as reg
from rnnserve.spec import LayerSpec, ModelSpec

CONSTRAINT_TOLERANCE = 1e-5

_KEY_BASE = {"recurrent_kernel": "recurrent"}


def config_key(weight: str, what: str) -> str:
    """The config key of a weight's regularizer or constraint: `kernel` -> `kernel_regularizer`, ..."""
    base = weight.rsplit("/", 1)[-1]
    return f"{_KEY_BASE.get(base, base)}_{what}"


def _weight_configs(layer: LayerSpec) -> dict[str, Mapping[str, Any]]:
    """Weight name -> the config holding its regularizer and constraint."""
    kind = kind_of(layer)
    parts = kind.parts(layer.config)
    own = kind.own_config(layer.config)
    return {weight: parts.get(weight.rpartition("/")[0], own) for weight in layer.weights}


def _regularizer(value: Any, argument: str) -> tuple[reg.Regularizer | None, str | None]:
    """The regularizer of a config value, or (None, why) when rnnserve cannot compute it (a custom class)."""
    try:
        return reg.get(value, argument), None
    except InvalidArgument as exc:
        return None, str(exc)


def _name(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("class_name"))
    return str(value)


def weight_penalties(spec: ModelSpec) -> dict[str, Any]:
    """`{"total", "layers": [{"layer", "total", "weights": [{"weight", "regularizer", "penalty"}]}]}` for the
    layers with a weight regularizer; a regularizer rnnserve cannot compute has `penalty` null and `error`."""
    layers = []
    total = 0.0
    for layer in spec.layers:
        configs = _weight_configs(layer)
        entries = []
        for weight, value in layer.weights.items():
            key = config_key(weight, "regularizer")
            identifier = configs[weight].get(key)
            if identifier is None:
                continue
            regularizer, error = _regularizer(identifier, key)
            entry: dict[str, Any] = {"weight": weight, "regularizer": _name(identifier)}
            if regularizer is None:
                entry |= {"penalty": None, "error": error}
            else:
                try:
                    entry["penalty"] = float(regularizer(np.asarray(value, dtype=np.float64)))
                except InvalidArgument as exc:  # e.g. OrthogonalRegularizer on a 1-D bias: Keras fails too
                    entry |= {"penalty": None, "error": str(exc)}
            entries.append(entry)
        if entries:
            layer_total = sum(e["penalty"] for e in entries if e["penalty"] is not None)
            layers.append({"layer": layer.name, "total": layer_total, "weights": entries})
            total += layer_total
    return {"total": total, "layers": layers}


def constraint_violation(constraint: con.Constraint, weight: np.ndarray) -> float:
    """How far `weight` is outside `constraint` at worst (0 inside), in the constraint's own units."""
    w = np.asarray(weight, dtype=np.float64)
    if isinstance(constraint, con.NonNeg):
        return float(max(0.0, -float(w.min(initial=0.0))))
    axis = getattr(constraint, "axis", 0)
    norms = np.sqrt(np.sum(np.square(w), axis=tuple(axis) if isinstance(axis, list) else axis))
    if isinstance(constraint, con.MaxNorm):
        return float(max(0.0, float(np.max(norms - constraint.max_value, initial=0.0))))
    if isinstance(constraint, con.MinMaxNorm):
        below = np.max(constraint.min_value - norms, initial=0.0)
        above = np.max(norms - constraint.max_value, initial=0.0)
        return float(max(0.0, float(below), float(above)))
    if isinstance(constraint, con.UnitNorm):
        return float(np.max(np.abs(norms - 1.0), initial=0.0))
    raise InvalidArgument(f"no violation measure for constraint {constraint.class_name!r}")


def constraint_report(spec: ModelSpec) -> list[dict[str, Any]]:
    """`[{"layer", "weight", "constraint", "satisfied", "worst_violation"}]` for every constrained weight; a
    constraint rnnserve does not know has `satisfied` null and `error`."""
    found = []
    for layer in spec.layers:
        configs = _weight_configs(layer)
        for weight, value in layer.weights.items():
            key = config_key(weight, "constraint")
            identifier = configs[weight].get(key)
            if identifier is None:
                continue
            entry: dict[str, Any] = {"layer": layer.name, "weight": weight, "constraint": _name(identifier)}
            try:
                constraint = con.get(identifier, key)
                assert constraint is not None
                worst = constraint_violation(constraint, np.asarray(value))
            except (InvalidArgument, ValueError) as exc:
                entry |= {"satisfied": None, "worst_violation": None, "error": str(exc)}
            else:
                entry |= {"satisfied": worst <= CONSTRAINT_TOLERANCE, "worst_violation": worst}
            found.append(entry)
    return found


def activity_regularizers(spec: ModelSpec) -> dict[str, reg.Regularizer]:
    """Layer name -> its activity regularizer (layers without one left out); `InvalidArgument` for one rnnserve
    cannot compute."""
    found = {}
    for layer in spec.layers:
        identifier = layer.config.get("activity_regularizer")
        if identifier is None:
            continue
        regularizer = reg.get(identifier, f"{layer.name}.activity_regularizer")
        if regularizer is not None:
            found[layer.name] = regularizer
    return found


def activity_penalty(regularizer: reg.Regularizer, outputs: Sequence[np.ndarray]) -> float:
    """Keras' activity loss of one layer call: `regularizer(output) / output.shape[0]` summed over its outputs."""
    total = 0.0
    for output in outputs:
        value = np.asarray(output, dtype=np.float64)
        penalty = regularizer(value)
        total += penalty / value.shape[0] if value.ndim > 0 and value.shape[0] else penalty
    return total


def call_losses(
    spec: ModelSpec, layer_outputs: Mapping[str, Sequence[np.ndarray]], weights: Mapping[str, Any]
) -> dict[str, Any]:
    """What `model.losses` holds after `model(x)`: `{"total", "weights", "activity", "layers": [{"layer",
    "weights"?, "activity"?}]}`, `weights` being `weight_penalties(spec)` (computed once per model)."""
    by_layer: dict[str, dict[str, Any]] = {}
    for entry in weights["layers"]:
        by_layer[entry["layer"]] = {"layer": entry["layer"], "weights": entry["total"]}
    activity = 0.0
    for name, regularizer in activity_regularizers(spec).items():
        penalty = activity_penalty(regularizer, layer_outputs[name])
        by_layer.setdefault(name, {"layer": name})["activity"] = penalty
        activity += penalty
    order = {layer.name: k for k, layer in enumerate(spec.layers)}
    layers = sorted(by_layer.values(), key=lambda e: order[e["layer"]])
    total = float(weights["total"]) + activity
    return {"total": total, "weights": float(weights["total"]), "activity": activity, "layers": layers}
