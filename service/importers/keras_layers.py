"""Normalise one Keras layer config (Keras 3 or Keras 2 form), and say which weights it has and their shapes.

A normalised config uses Keras 3 key names, holds every key of its class with Keras defaults filled in, and
drops only keys that cannot change inference numbers (`trainable`, `dtype` once checked, Keras 2's
`implementation`, `batch_input_shape`, `input_length`). A key this module does not know is refused, since it
might change the numbers. Initializers, regularizers and constraints are kept as given (strings or
serialized dicts). Per class:

* SimpleRNN: `name, units, activation, use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
  kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
  recurrent_constraint, bias_constraint, dropout, recurrent_dropout, return_sequences, return_state,
  go_backwards, stateful, unroll, zero_output_for_mask, seed, time_major`;
  GRU adds `recurrent_activation, reset_after`; LSTM adds `recurrent_activation, unit_forget_bias`.
* Dense: `name, units, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
  bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint`.
* Embedding: `name, input_dim, output_dim, embeddings_initializer, embeddings_regularizer,
  activity_regularizer, embeddings_constraint, mask_zero`.
* Masking: `name, mask_value`.  Dropout: `name, rate, noise_shape, seed`.
* Bidirectional: `name, merge_mode` ("concat" | "sum" | "mul" | "ave" | None: two outputs, forward then
  backward) and `layer = {"class_name", "config"}`
  with the normalised forward RNN config, whose `zero_output_for_mask` is set to its `return_sequences` (Keras
  forces that on both directions). The backward RNN is that config with `go_backwards` flipped.
* TimeDistributed: `name` and `layer = {"class_name": "Dense", "config": <normalised Dense config>}`.

Activations are canonical names (`service.layers.activations.canonical_activation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.errors import InvalidArgument, ModelFileError, UnsupportedLayer
from service.importers.jsonish import is_number, short
from service.layers.activations import canonical_activation, require_shape_preserving
from service.spec import RECURRENT, SUPPORTED_LAYERS

SUPPORTED_CLASSES = ("InputLayer", *sorted(SUPPORTED_LAYERS))
FLOAT_POLICIES = frozenset({"float32", "float64"})
MERGE_MODES = ("concat", "sum", "mul", "ave", None)
GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}

_REQUIRED = object()

_RNN_DEFAULTS: Mapping[str, Any] = {
    "units": _REQUIRED,
    "activation": "tanh",
    "use_bias": True,
    "kernel_initializer": "glorot_uniform",
    "recurrent_initializer": "orthogonal",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "recurrent_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "recurrent_constraint": None,
    "bias_constraint": None,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "return_sequences": False,
    "return_state": False,
    "go_backwards": False,
    "stateful": False,
    "unroll": False,
    "zero_output_for_mask": False,
    "seed": None,
    "time_major": False,
}
_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "SimpleRNN": _RNN_DEFAULTS,
    "GRU": {**_RNN_DEFAULTS, "recurrent_activation": "sigmoid", "reset_after": True},
    "LSTM": {**_RNN_DEFAULTS, "recurrent_activation": "sigmoid", "unit_forget_bias": True},
    "Dense": {
        "units": _REQUIRED,
        "activation": "linear",
        "use_bias": True,
        "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros",
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    },
    "Embedding": {
        "input_dim": _REQUIRED,
        "output_dim": _REQUIRED,
        "embeddings_initializer": "uniform",
        "embeddings_regularizer": None,
        "activity_regularizer": None,
        "embeddings_constraint": None,
        "mask_zero": False,
    },
    "Masking": {"mask_value": 0.0},
    "Dropout": {"rate": _REQUIRED, "noise_shape": None, "seed": None},
}
# Keys that never change inference numbers once checked; dropped from the normalised config.
_DROPPED = frozenset({"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "batch_size"})
_DROPPED_BY_CLASS: Mapping[str, frozenset[str]] = {
    "GRU": frozenset({"implementation"}),
    "LSTM": frozenset({"implementation"}),
    "Embedding": frozenset({"input_length"}),
}
# Keys that are fine only with a neutral value (anything else changes the numbers or the weights).
_NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "quantization_config": (None,),
    "lora_rank": (None, 0),
    "lora_alpha": (None,),
    "sparse": (False,),
    "num_constants": (0, None),
}

_BOOLS = frozenset(
    {
        "use_bias", "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
        "zero_output_for_mask", "time_major", "reset_after", "unit_forget_bias", "mask_zero",
    }
)  # fmt: skip
_POSITIVE_INTS = frozenset({"units", "input_dim", "output_dim"})
_RATES = frozenset({"dropout", "recurrent_dropout", "rate"})
# Bidirectional: the backward layer must equal the forward one but for these keys.
_NOT_COMPARED = frozenset(
    {"name", "go_backwards", "dropout", "recurrent_dropout", "seed", "zero_output_for_mask"}
    | {k for k in _DEFAULTS["LSTM"] if k.endswith(("_initializer", "_regularizer", "_constraint"))}
)


def describe(name: str, class_name: str) -> str:
    return f"layer {name!r} ({class_name})"


def unsupported_class(name: str, class_name: object) -> UnsupportedLayer:
    return UnsupportedLayer(
        f"layer {name!r} has class {class_name!r}, which rnnserve does not support "
        f"(supported: {', '.join(SUPPORTED_CLASSES)})"
    )


def normalise_layer(class_name: str, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
    """The normalised config of a layer of a supported class (see the module docstring)."""
    if class_name == "Bidirectional":
        return _bidirectional(config, name, keras_version)
    if class_name == "TimeDistributed":
        return _time_distributed(config, name, keras_version)
    if class_name in _DEFAULTS:
        return _plain(class_name, config, name, keras_version)
    raise unsupported_class(name, class_name)


def dtype_policy_name(value: Any, where: str) -> str:
    """The policy name of a Keras `dtype` entry: a string, a (Keras 3 / mixed precision) policy dict, or None."""
    if value is None:
        return "float32"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("config")
        if isinstance(inner, Mapping) and isinstance(inner.get("name"), str):
            return str(inner["name"])
    raise ModelFileError(f"{where}: cannot read its dtype {short(value)}")


# ---- one class -------------------------------------------------------------------------------------------------


def _plain(class_name: str, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
    """Normalise a non-wrapper layer: check every key, then list them in the order of `_DEFAULTS`."""
    where = describe(name, class_name)
    _check_dtype(config, where)
    defaults = _DEFAULTS[class_name]
    dropped = _DROPPED | _DROPPED_BY_CLASS.get(class_name, frozenset())
    for key, value in config.items():
        if key in _NEUTRAL:
            _require_neutral(key, value, where)
        elif key not in defaults and key not in dropped:
            raise UnsupportedLayer(f"{where}: argument {key!r} is not supported (it may change the outputs)")
    out: dict[str, Any] = {"name": name}
    for key, default in defaults.items():
        if key in config:
            out[key] = _checked(key, config[key], where)
        elif default is _REQUIRED:
            raise ModelFileError(f"{where}: its config has no {key!r}")
        else:
            out[key] = default
    _canonical_activations(class_name, out, where, keras_version)
    return out


def _canonical_activations(class_name: str, config: dict[str, Any], where: str, keras_version: str) -> None:
    keys = ("activation", "recurrent_activation") if class_name in ("GRU", "LSTM") else ("activation",)
    for key in keys if "activation" in _DEFAULTS[class_name] else ():
        try:
            config[key] = canonical_activation(config[key], keras_version, argument=key)
            if class_name in RECURRENT:
                require_shape_preserving(config[key], argument=key)
        except InvalidArgument as exc:
            raise UnsupportedLayer(f"{where}: {exc}") from None


def _require_neutral(key: str, value: Any, where: str) -> None:
    if not any(value is v or (type(value) is type(v) and value == v) for v in _NEUTRAL[key]):
        raise UnsupportedLayer(f"{where}: argument {key}={short(value)} is not supported")


def _checked(key: str, value: Any, where: str) -> Any:
    """`value` for a known key after a type check (wrong types are damaged files, not unsupported features)."""
    if key in _BOOLS and not isinstance(value, bool):
        raise ModelFileError(f"{where}: {key}={short(value)} is not a boolean")
    if key in _POSITIVE_INTS and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ModelFileError(f"{where}: {key}={short(value)} is not a positive integer")
    if key in _RATES and (not is_number(value) or not 0.0 <= value <= 1.0):
        raise ModelFileError(f"{where}: {key}={short(value)} is not a rate in [0, 1]")
    if key == "mask_value" and not is_number(value):
        raise UnsupportedLayer(f"{where}: mask_value={short(value)} is not supported (only a scalar)")
    if key == "seed" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ModelFileError(f"{where}: seed={short(value)} is not an integer")
    return value


def _check_dtype(config: Mapping[str, Any], where: str) -> None:
    policy = dtype_policy_name(config.get("dtype"), where)
    if policy not in FLOAT_POLICIES:
        raise UnsupportedLayer(
            f"{where}: dtype policy {policy!r} is not supported (rnnserve computes in float32; "
            f"supported: {', '.join(sorted(FLOAT_POLICIES))})"
        )


# ---- wrappers --------------------------------------------------------------------------------------------------


def _inner(config: Mapping[str, Any], key: str, where: str) -> tuple[str, Mapping[str, Any], str]:
    """(class, config, name) of a wrapped layer `config[key]`."""
    inner = config.get(key)
    if not isinstance(inner, Mapping) or not isinstance(inner.get("config"), Mapping):
        raise ModelFileError(f"{where}: its {key!r} is not a serialized layer")
    class_name = inner.get("class_name")
    if not isinstance(class_name, str):
        raise ModelFileError(f"{where}: its {key!r} has no class_name")
    name = inner["config"].get("name", f"{key}")
    return class_name, inner["config"], str(name)


def _wrapper_keys(config: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    _check_dtype(config, where)
    for key, value in config.items():
        if key in _NEUTRAL:
            _require_neutral(key, value, where)
        elif key not in allowed and key not in _DROPPED:
            raise UnsupportedLayer(f"{where}: argument {key!r} is not supported (it may change the outputs)")


def _bidirectional(config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
    where = describe(name, "Bidirectional")
    _wrapper_keys(config, frozenset({"merge_mode", "layer", "backward_layer"}), where)
    merge_mode = config.get("merge_mode", "concat")
    if merge_mode not in MERGE_MODES:
        raise UnsupportedLayer(f"{where}: merge_mode={short(merge_mode)} is not supported (supported: {MERGE_MODES})")
    class_name, raw, inner_name = _inner(config, "layer", where)
    if class_name not in RECURRENT:
        raise UnsupportedLayer(f"{where}: wraps a {class_name!r}; rnnserve supports {', '.join(sorted(RECURRENT))}")
    forward = _plain(class_name, raw, inner_name, keras_version)
    if config.get("backward_layer") is not None:
        _check_backward(config, class_name, forward, where, keras_version)
    forward["zero_output_for_mask"] = forward["return_sequences"]
    return {"name": name, "merge_mode": merge_mode, "layer": {"class_name": class_name, "config": forward}}


def _check_backward(
    config: Mapping[str, Any], class_name: str, forward: Mapping[str, Any], where: str, keras_version: str
) -> None:
    """Keras 3 always stores `backward_layer`; accept it when it is the copy Keras derives from `layer`."""
    back_class, raw, back_name = _inner(config, "backward_layer", where)
    backward = _plain(back_class, raw, back_name, keras_version) if back_class == class_name else None
    same = (
        backward is not None
        and backward["go_backwards"] != forward["go_backwards"]
        and all(backward[k] == v for k, v in forward.items() if k not in _NOT_COMPARED)
    )
    if not same:
        raise UnsupportedLayer(
            f"{where}: argument 'backward_layer' is not supported when it differs from the forward layer "
            "(rnnserve needs the backward RNN to be the forward one with go_backwards flipped)"
        )


def _time_distributed(config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
    where = describe(name, "TimeDistributed")
    _wrapper_keys(config, frozenset({"layer"}), where)
    class_name, raw, inner_name = _inner(config, "layer", where)
    if class_name != "Dense":
        raise UnsupportedLayer(f"{where}: wraps a {class_name!r}; rnnserve supports TimeDistributed(Dense) only")
    return {"name": name, "layer": {"class_name": "Dense", "config": _plain("Dense", raw, inner_name, keras_version)}}


# ---- weights and shapes ----------------------------------------------------------------------------------------

Shape = tuple[int | None, ...]


def weight_shapes(class_name: str, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
    """The weights of a normalised layer in Keras creation order, with their expected shapes.

    `in_features` is the last axis of the layer's input (None when unknown: that dimension is then not checked).
    """
    if class_name in RECURRENT:
        return _rnn_shapes(class_name, config, in_features)
    if class_name == "Bidirectional":
        inner = config["layer"]
        one_way = _rnn_shapes(inner["class_name"], inner["config"], in_features)
        return {f"{d}/{k}": s for d in ("forward", "backward") for k, s in one_way.items()}
    if class_name == "TimeDistributed":
        return weight_shapes("Dense", config["layer"]["config"], in_features)
    if class_name == "Dense":
        units = int(config["units"])
        shapes: dict[str, Shape] = {"kernel": (in_features, units)}
        if config["use_bias"]:
            shapes["bias"] = (units,)
        return shapes
    if class_name == "Embedding":
        return {"embeddings": (int(config["input_dim"]), int(config["output_dim"]))}
    return {}


def _rnn_shapes(class_name: str, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
    units = int(config["units"])
    width = GATES[class_name] * units
    shapes: dict[str, Shape] = {"kernel": (in_features, width), "recurrent_kernel": (units, width)}
    if config["use_bias"]:
        shapes["bias"] = (2, width) if class_name == "GRU" and config["reset_after"] else (width,)
    return shapes


def output_features(class_name: str, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
    """The last axis of each output of a normalised layer: `[y]` or `[y, *states]` with return_state (Bidirectional
    with merge_mode=None: `[y_forward, y_backward, *states]`)."""
    if class_name in RECURRENT:
        units = int(config["units"])
        states = (2 if class_name == "LSTM" else 1) if config["return_state"] else 0
        return [units] * (1 + states)
    if class_name == "Bidirectional":
        inner = config["layer"]
        units = int(inner["config"]["units"])
        state_sizes = output_features(inner["class_name"], inner["config"], in_features)[1:]
        merge_mode = config["merge_mode"]
        merged = 2 * units if merge_mode == "concat" else units
        ys: list[int | None] = [units, units] if merge_mode is None else [merged]
        return [*ys, *state_sizes, *state_sizes]
    if class_name == "TimeDistributed":
        return [int(config["layer"]["config"]["units"])]
    if class_name == "Dense":
        return [int(config["units"])]
    if class_name == "Embedding":
        return [int(config["output_dim"])]
    return [in_features]
