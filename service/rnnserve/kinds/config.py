"""Normalising a Keras layer config (Keras 3 or Keras 2 form): the checks every kind shares.

A normalised config uses Keras 3 key names, holds every key of its kind (`LayerKind.defaults`, in that order)
with Keras defaults filled in, and drops only keys that cannot change inference numbers (`trainable`, `dtype`
once checked, `batch_input_shape`, and per kind `LayerKind.dropped`, e.g. Keras 2's `implementation`). A key
the kind does not know is refused, since it might change the numbers. Initializers, regularizers and
constraints are kept as given (strings or serialized dicts). Activations are canonical names
(`rnnserve.layers.activations.canonical_activation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rnnserve.errors import InvalidArgument, ModelFileError, UnsupportedLayer
from rnnserve.importers.jsonish import is_number, short
from rnnserve.importers.keras_layers import describe, dtype_policy_name
from rnnserve.layers.activations import canonical_activation, require_shape_preserving

if TYPE_CHECKING:
    from rnnserve.kinds.base import LayerKind

FLOAT_POLICIES = frozenset({"float32", "float64"})

# Keys that never change inference numbers once checked; dropped from the normalised config.
DROPPED = frozenset({"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "batch_size"})
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


def plain(kind: LayerKind, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
    """Normalise a non-wrapper layer: check every key, then list them in the order of `kind.defaults`."""
    from rnnserve.kinds.base import REQUIRED

    where = describe(name, kind.class_name)
    check_dtype(config, where)
    defaults = kind.defaults
    dropped = DROPPED | kind.dropped
    for key, value in config.items():
        if key in _NEUTRAL:
            require_neutral(key, value, where)
        elif key not in defaults and key not in dropped:
            raise UnsupportedLayer(f"{where}: argument {key!r} is not supported (it may change the outputs)")
    out: dict[str, Any] = {"name": name}
    for key, default in defaults.items():
        if key in config:
            out[key] = _checked(key, config[key], where)
        elif default is REQUIRED:
            raise ModelFileError(f"{where}: its config has no {key!r}")
        else:
            out[key] = default
    _canonical_activations(kind, out, where, keras_version)
    return out


def _canonical_activations(kind: LayerKind, config: dict[str, Any], where: str, keras_version: str) -> None:
    for key in kind.activation_keys:
        try:
            config[key] = canonical_activation(config[key], keras_version, argument=key)
            if kind.is_recurrent:
                require_shape_preserving(config[key], argument=key)
        except InvalidArgument as exc:
            raise UnsupportedLayer(f"{where}: {exc}") from None


def require_neutral(key: str, value: Any, where: str) -> None:
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


def check_dtype(config: Mapping[str, Any], where: str) -> None:
    policy = dtype_policy_name(config.get("dtype"), where)
    if policy not in FLOAT_POLICIES:
        raise UnsupportedLayer(
            f"{where}: dtype policy {policy!r} is not supported (rnnserve computes in float32; "
            f"supported: {', '.join(sorted(FLOAT_POLICIES))})"
        )


# ---- wrappers --------------------------------------------------------------------------------------------------


def inner_layer(config: Mapping[str, Any], key: str, where: str) -> tuple[str, Mapping[str, Any], str]:
    """(class, config, name) of a wrapped layer `config[key]`."""
    inner = config.get(key)
    if not isinstance(inner, Mapping) or not isinstance(inner.get("config"), Mapping):
        raise ModelFileError(f"{where}: its {key!r} is not a serialized layer")
    class_name = inner.get("class_name")
    if not isinstance(class_name, str):
        raise ModelFileError(f"{where}: its {key!r} has no class_name")
    name = inner["config"].get("name", f"{key}")
    return class_name, inner["config"], str(name)


def wrapper_keys(config: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    check_dtype(config, where)
    for key, value in config.items():
        if key in _NEUTRAL:
            require_neutral(key, value, where)
        elif key not in allowed and key not in DROPPED:
            raise UnsupportedLayer(f"{where}: argument {key!r} is not supported (it may change the outputs)")
