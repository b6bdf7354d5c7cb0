"""Keras activations in numpy, by canonical name: the definitions every other part of rnnserve must match.

Canonical names are Keras 3.15 names (`keras.activations.ALL_OBJECTS_DICT`, aliases folded) plus
`"hard_sigmoid_keras2"`, Keras 2's `clip(0.2x + 0.5, 0, 1)`, which Keras 2 files call `"hard_sigmoid"`.
Each function uses its Keras default parameters, which is what a layer given the name as a string computes.

Two Keras names are deliberately not canonical:

* `threshold` has no defaults for `threshold`/`default_value`, so a layer given it as a string raises inside
  Keras on its first call; `canonical_activation` rejects it.
* `glu` is canonical (Dense may use it) but it halves the last axis, so a recurrent cell cannot use it: Keras
  fails at the second step multiplying the halved state. `require_shape_preserving` is the check cells use.

`softmax`, `log_softmax` and `sparsemax` are shape-preserving but act along the last axis (`ROW_WISE`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rnnserve.errors import InvalidArgument

Activation = Callable[[np.ndarray], np.ndarray]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # type: ignore[no-any-return]


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(x, 0.0)  # type: ignore[no-any-return]


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _gelu(x: np.ndarray) -> np.ndarray:
    erf = np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64)
    return 0.5 * x * (1.0 + erf)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)  # type: ignore[no-any-return]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))  # type: ignore[no-any-return]


def _sparsemax(x: np.ndarray) -> np.ndarray:
    """Martins & Astudillo (2016) along the last axis, as Keras computes it."""
    z = -np.sort(-x, axis=-1)
    cumsum = np.cumsum(z, axis=-1)
    k = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = z - (cumsum - 1.0) / k > 0
    size = np.sum(support, axis=-1, keepdims=True)
    tau = (np.sum(np.where(support, cumsum, 0.0), axis=-1, keepdims=True) - 1.0) / size
    return np.maximum(x - tau, 0.0)  # type: ignore[no-any-return]


def _glu(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] % 2:
        raise InvalidArgument(f"activation 'glu' needs an even last axis, got shape {x.shape}")
    a, b = np.split(x, 2, axis=-1)
    return a * _sigmoid(b)  # type: ignore[no-any-return]


_FUNCTIONS: Mapping[str, Activation] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.maximum(x, 0.2 * x),
    "elu": _elu,
    "celu": lambda x: np.maximum(x, 0.0) + np.expm1(np.minimum(x, 0.0)),
    "selu": lambda x: _SELU_SCALE * _elu(x, _SELU_ALPHA),
    "exponential": np.exp,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "log_sigmoid": lambda x: -_softplus(-x),
    "sparse_sigmoid": lambda x: np.clip(0.5 * (x + 1.0), 0.0, 1.0),
    "tanh": np.tanh,
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "softplus": _softplus,
    "sparse_plus": lambda x: np.where(x <= -1.0, 0.0, np.where(x < 1.0, 0.25 * (x + 1.0) ** 2, x)),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4.0)) / 2.0,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "silu": lambda x: x * _sigmoid(x),
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "gelu": _gelu,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "sparsemax": _sparsemax,
    "glu": _glu,
}

ACTIVATION_NAMES: frozenset[str] = frozenset(_FUNCTIONS)
ROW_WISE: frozenset[str] = frozenset({"softmax", "log_softmax", "sparsemax", "glu"})
SHAPE_CHANGING: frozenset[str] = frozenset({"glu"})

# Keras aliases (both versions) and the names whose meaning depends on the Keras major version.
_ALIASES: Mapping[str, str] = {"swish": "silu", "hard_swish": "hard_silu"}
_KERAS2_RENAMES: Mapping[str, str] = {"hard_sigmoid": "hard_sigmoid_keras2"}
_NEEDS_PARAMETERS = frozenset({"threshold"})


def _is_keras2(keras_version: str) -> bool:
    return keras_version.strip().split(".", 1)[0] == "2"


def canonical_activation(name: Any, keras_version: str = "3", *, argument: str = "activation") -> str:
    """The canonical name of a Keras activation as written in a layer config.

    `None` and `"linear"` give `"linear"`; aliases fold (`swish` -> `silu`, `hard_swish` -> `hard_silu`);
    `hard_sigmoid` from a Keras 2 file (`keras_version` "2.x") becomes `"hard_sigmoid_keras2"`. Canonical names
    map to themselves. `argument` names the config key in error messages.

    Raises:
        InvalidArgument: an unknown name, `threshold` (needs parameters), or a serialized object (a dict: Keras
            writes one only for activation layers and custom functions, never for a builtin).
    """
    if name is None:
        return "linear"
    if isinstance(name, Mapping):
        raise InvalidArgument(
            f"{argument}={dict(name)!r}: only builtin Keras activations given by name are supported, "
            f"not serialized objects such as {name.get('class_name')!r}"
        )
    if not isinstance(name, str):
        raise InvalidArgument(f"{argument}={name!r}: expected an activation name (str) or None")
    key = name.strip()
    if _is_keras2(keras_version):
        key = _KERAS2_RENAMES.get(key, key)
    key = _ALIASES.get(key, key)
    if key in _NEEDS_PARAMETERS:
        raise InvalidArgument(f"{argument}={name!r}: this activation needs parameters Keras cannot store by name")
    if key not in ACTIVATION_NAMES:
        known = ", ".join(sorted(ACTIVATION_NAMES))
        raise InvalidArgument(f"{argument}={name!r} is not a known Keras activation (known: {known})")
    return key


def require_shape_preserving(name: str, *, argument: str = "activation") -> None:
    """Raise InvalidArgument unless `name` keeps the shape of its input (recurrent cells need this)."""
    if name in SHAPE_CHANGING:
        raise InvalidArgument(
            f"{argument}={name!r} changes the last axis; a recurrent cell needs a shape-preserving activation"
        )


def get(name: str) -> Activation:
    """The numpy function of a canonical activation name."""
    try:
        return _FUNCTIONS[name]
    except KeyError:
        raise InvalidArgument(f"activation={name!r} is not a canonical activation name") from None


def apply(name: str, x: np.ndarray) -> np.ndarray:
    """Apply the canonical activation `name` to `x` (elementwise, or along the last axis for `ROW_WISE`)."""
    return np.asarray(get(name)(np.asarray(x)))
