"""Keras 3 weight initializers in numpy: same definitions, names, aliases and serialized configs.

An initializer is called with a shape and returns a float32 array. Random initializers take a `seed`; without
one they draw a seed from `rnnserve.modeling.seeding` when created, so (as in Keras) one initializer object gives
the same values on every call and `set_random_seed(n)` makes model building reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnserve.errors import InvalidArgument
from rnnserve.modeling import arguments
from rnnserve.modeling.seeding import draw_seed
from rnnserve.modeling.serialization import Factory, KerasObject, resolve

Shape = Sequence[int]

# Keras divides the truncated-normal stddev by the stddev of a unit normal truncated to [-2, 2].
TRUNCATION_STDDEV = 0.87962566103423978


class Initializer(KerasObject):
    module = "keras.initializers"

    def __call__(self, shape: Shape, dtype: str = "float32") -> np.ndarray:
        if dtype != "float32":
            raise InvalidArgument(f"only float32 weights are supported. Received: dtype={dtype!r}", argument="dtype")
        return np.asarray(self.generate(tuple(int(d) for d in shape)), dtype=np.float32)

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError


def compute_fans(
    shape: Shape, input_axes: Sequence[int] | None = None, output_axes: Sequence[int] | None = None
) -> tuple[int, int]:
    """Keras' fans: for a 2-D weight `fan_in = shape[0]`, `fan_out = shape[1]`."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


# ---- constants ---------------------------------------------------------------------------------------------------


class Zeros(Initializer):
    class_name = "Zeros"

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape)


class Ones(Initializer):
    class_name = "Ones"

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.ones(shape)


class Constant(Initializer):
    class_name = "Constant"

    def __init__(self, value: float = 0.0) -> None:
        arguments.finite_float("value", value)
        self.value = value

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.full(shape, float(self.value))


class Identity(Initializer):
    class_name = "Identity"

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = arguments.finite_float("gain", gain)

    def get_config(self) -> dict[str, Any]:
        # Keras 3.15 writes `{}` and so loses a non-default gain; keep it when it matters.
        return {} if self.gain == 1.0 else {"gain": self.gain}

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        if len(shape) != 2:
            raise InvalidArgument(
                f"Identity initializer needs a 2-D weight. Received: shape={shape}", argument="initializer"
            )
        return self.gain * np.eye(*shape)


# ---- random ------------------------------------------------------------------------------------------------------


class RandomInitializer(Initializer):
    def __init__(self, seed: int | None = None) -> None:
        self._init_seed = arguments.optional_int("seed", seed)
        self.seed = draw_seed() if seed is None else self._init_seed

    def get_config(self) -> dict[str, Any]:
        return {"seed": self._init_seed}

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], mean: float, stddev: float) -> np.ndarray:
    """Normal samples, those beyond two standard deviations re-drawn (Keras `random.truncated_normal`)."""
    values = rng.normal(mean, stddev, size=shape)
    outside = np.abs(values - mean) > 2 * stddev
    while outside.any():
        values[outside] = rng.normal(mean, stddev, size=int(outside.sum()))
        outside = np.abs(values - mean) > 2 * stddev
    return values


class RandomNormal(RandomInitializer):
    class_name = "RandomNormal"

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        self.mean = arguments.finite_float("mean", mean)
        self.stddev = arguments.finite_float("stddev", stddev)
        super().__init__(seed)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng().normal(self.mean, self.stddev, size=shape)


class TruncatedNormal(RandomNormal):
    class_name = "TruncatedNormal"

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        return truncated_normal(self.rng(), shape, self.mean, self.stddev)


class RandomUniform(RandomInitializer):
    class_name = "RandomUniform"

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        self.minval = arguments.finite_float("minval", minval)
        self.maxval = arguments.finite_float("maxval", maxval)
        super().__init__(seed)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng().uniform(self.minval, self.maxval, size=shape)


_MODES = frozenset({"fan_in", "fan_out", "fan_avg"})
_DISTRIBUTIONS = frozenset({"uniform", "truncated_normal", "untruncated_normal"})


class VarianceScaling(RandomInitializer):
    class_name = "VarianceScaling"

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        self.scale = arguments.finite_float("scale", scale)
        if self.scale <= 0:
            raise arguments.invalid("scale", scale, "must be a positive float")
        self.mode = arguments.choice("mode", mode, _MODES)
        if isinstance(distribution, str):
            distribution = "truncated_normal" if distribution.lower() == "normal" else distribution.lower()
        self.distribution = arguments.choice("distribution", distribution, _DISTRIBUTIONS)
        self.input_axes = None if input_axes is None else list(input_axes)
        self.output_axes = None if output_axes is None else list(output_axes)
        super().__init__(seed)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }

    def variance(self, shape: tuple[int, ...]) -> float:
        """The target variance `scale / n` for this shape, with n the fan chosen by `mode`."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        return self.scale / max(1.0, n)

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        variance = self.variance(shape)
        if self.distribution == "truncated_normal":
            return truncated_normal(self.rng(), shape, 0.0, math.sqrt(variance) / TRUNCATION_STDDEV)
        if self.distribution == "untruncated_normal":
            return self.rng().normal(0.0, math.sqrt(variance), size=shape)
        limit = math.sqrt(3.0 * variance)
        return self.rng().uniform(-limit, limit, size=shape)


class _FixedVarianceScaling(VarianceScaling):
    """GlorotUniform and friends: VarianceScaling with fixed scale/mode/distribution and a shorter config."""

    fixed: tuple[float, str, str]

    def __init__(
        self, seed: int | None = None, input_axes: Sequence[int] | None = None, output_axes: Sequence[int] | None = None
    ) -> None:
        scale, mode, distribution = self.fixed
        super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self._init_seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    class_name = "GlorotUniform"
    fixed = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    class_name = "GlorotNormal"
    fixed = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    class_name = "HeUniform"
    fixed = (2.0, "fan_in", "uniform")


class HeNormal(_FixedVarianceScaling):
    class_name = "HeNormal"
    fixed = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    class_name = "LecunUniform"
    fixed = (1.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    class_name = "LecunNormal"
    fixed = (1.0, "fan_in", "truncated_normal")


class Orthogonal(RandomInitializer):
    """QR of a normal (max(r, c), min(r, c)) matrix, signs fixed by diag(R), transposed if rows < cols."""

    class_name = "Orthogonal"

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain = arguments.finite_float("gain", gain)
        super().__init__(seed)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gain": self.gain}

    def generate(self, shape: tuple[int, ...]) -> np.ndarray:
        if len(shape) < 2:
            raise InvalidArgument(
                f"Orthogonal initializer needs a weight of rank >= 2. Received: shape={shape}", argument="initializer"
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self.rng().normal(size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)


# ---- lookup ------------------------------------------------------------------------------------------------------

_CLASSES: tuple[type[Initializer], ...] = (
    Zeros, Ones, Constant, Identity, RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling,
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal,
)  # fmt: skip
_SNAKE = {
    "Zeros": "zeros", "Ones": "ones", "Constant": "constant", "Identity": "identity",
    "RandomNormal": "random_normal", "TruncatedNormal": "truncated_normal", "RandomUniform": "random_uniform",
    "VarianceScaling": "variance_scaling", "GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal",
    "HeUniform": "he_uniform", "HeNormal": "he_normal", "LecunUniform": "lecun_uniform",
    "LecunNormal": "lecun_normal", "Orthogonal": "orthogonal",
}  # fmt: skip
_ALIASES = {
    "normal": RandomNormal, "uniform": RandomUniform, "one": Ones, "zero": Zeros,
    "IdentityInitializer": Identity, "OrthogonalInitializer": Orthogonal,
}  # fmt: skip
REGISTRY: Mapping[str, Factory] = {
    **{cls.class_name: cls for cls in _CLASSES},
    **{_SNAKE[cls.class_name]: cls for cls in _CLASSES},
    **_ALIASES,
}


def get(identifier: Any, argument: str = "initializer") -> Initializer:
    """An initializer from a Keras name ("glorot_uniform", "GlorotUniform", "uniform", ...), a serialized dict
    or an Initializer. Raises InvalidArgument naming `argument` otherwise (None included)."""
    if identifier is None:
        raise arguments.invalid(argument, identifier, "must be an initializer name or object, not NULL")
    obj = resolve(identifier, argument=argument, kind="initializer", base=Initializer, registry=REGISTRY)
    assert isinstance(obj, Initializer)
    return obj


# ---- R keras constructors ----------------------------------------------------------------------------------------


def initializer_zeros() -> Initializer:
    return Zeros()


def initializer_ones() -> Initializer:
    return Ones()


def initializer_constant(value: float = 0.0) -> Initializer:
    return Constant(value)


def initializer_identity(gain: float = 1.0) -> Initializer:
    return Identity(gain)


def initializer_random_normal(mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> Initializer:
    return RandomNormal(mean, stddev, seed)


def initializer_random_uniform(minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> Initializer:
    return RandomUniform(minval, maxval, seed)


def initializer_truncated_normal(mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> Initializer:
    return TruncatedNormal(mean, stddev, seed)


def initializer_variance_scaling(
    scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal", seed: int | None = None
) -> Initializer:
    return VarianceScaling(scale, mode, distribution, seed)


def initializer_orthogonal(gain: float = 1.0, seed: int | None = None) -> Initializer:
    return Orthogonal(gain, seed)


def initializer_glorot_uniform(seed: int | None = None) -> Initializer:
    return GlorotUniform(seed)


def initializer_glorot_normal(seed: int | None = None) -> Initializer:
    return GlorotNormal(seed)


def initializer_he_uniform(seed: int | None = None) -> Initializer:
    return HeUniform(seed)


def initializer_he_normal(seed: int | None = None) -> Initializer:
    return HeNormal(seed)


def initializer_lecun_uniform(seed: int | None = None) -> Initializer:
    return LecunUniform(seed)


def initializer_lecun_normal(seed: int | None = None) -> Initializer:
    return LecunNormal(seed)
