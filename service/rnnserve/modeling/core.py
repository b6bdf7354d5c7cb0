"""InputLayer, Dense, Embedding, Masking and Dropout."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from rnnserve.kinds import dense, dropout, embedding, input_layer, masking
from rnnserve.modeling import arguments, constraints, initializers, regularizers
from rnnserve.modeling.base import Layer, require_float_input
from rnnserve.modeling.recurrent import keras3_activation
from rnnserve.modeling.serialization import serialize_or_none
from rnnserve.modeling.tensors import KerasTensor, Node, Shape

INPUT_DTYPES = frozenset({"float32", "int32", "int64"})


class InputLayer(Layer):
    """A model input: its batch shape (batch axis first, None where free) and dtype."""

    class_name = input_layer.InputLayer.class_name
    prefix = "input_layer"

    def __init__(self, batch_shape: Shape, dtype: str | None = None, name: str | None = None) -> None:
        super().__init__(name=name)
        self.input_dtype = arguments.choice("dtype", dtype or "float32", INPUT_DTYPES)
        self.batch_shape = tuple(batch_shape)
        self._weights = {}  # built, without weights; no build_config in its serialized form
        node = Node(self, ())
        node.outputs = (KerasTensor(self.batch_shape, self.input_dtype, node, 0, False),)
        self.node = node

    @property
    def output(self) -> KerasTensor:
        assert self.node is not None
        return self.node.outputs[0]

    def get_config(self) -> dict[str, Any]:
        return {
            "batch_shape": list(self.batch_shape),
            "dtype": self.input_dtype,
            "sparse": False,
            "ragged": False,
            "name": self.name,
            "optional": False,
        }


class Dense(Layer):
    class_name = dense.Dense.class_name
    prefix = "dense"

    def __init__(
        self,
        units: Any,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = arguments.positive_int("units", units)
        self.activation = keras3_activation(activation, "activation")
        self.use_bias = arguments.flag("use_bias", use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer")
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        self.activity_regularizer = regularizers.get(activity_regularizer, "activity_regularizer")
        self.kernel_constraint = constraints.get(kernel_constraint, "kernel_constraint")
        self.bias_constraint = constraints.get(bias_constraint, "bias_constraint")

    def layer_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer.serialize(),
            "bias_initializer": self.bias_initializer.serialize(),
            "kernel_regularizer": serialize_or_none(self.kernel_regularizer),
            "bias_regularizer": serialize_or_none(self.bias_regularizer),
            "kernel_constraint": serialize_or_none(self.kernel_constraint),
            "bias_constraint": serialize_or_none(self.bias_constraint),
            "quantization_config": None,
        }
        if self.activity_regularizer is not None:  # Keras' base Layer writes it only when set
            config["activity_regularizer"] = self.activity_regularizer.serialize()
        return config

    def check_call(self, x: KerasTensor, initial_state: tuple[KerasTensor, ...]) -> None:
        super().check_call(x, initial_state)
        require_float_input(self, x)
        if len(x.shape) < 2 or x.shape[-1] is None:
            raise arguments.invalid("object", x, "must have a known last dimension for Dense")

    def build_weights(self, input_shape: Shape) -> dict[str, np.ndarray]:
        features = input_shape[-1]
        assert features is not None
        weights = {"kernel": self.kernel_initializer((features, self.units))}
        if self.use_bias:
            weights["bias"] = self.bias_initializer((self.units,))
        return weights

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        return [((*x.shape[:-1], self.units), "float32", x.has_mask)]


class Embedding(Layer):
    class_name = embedding.Embedding.class_name
    prefix = "embedding"

    def __init__(
        self,
        input_dim: Any,
        output_dim: Any,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        activity_regularizer: Any = None,
        embeddings_constraint: Any = None,
        mask_zero: bool = False,
        input_length: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_dim = arguments.positive_int("input_dim", input_dim)
        self.output_dim = arguments.positive_int("output_dim", output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer, "embeddings_initializer")
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer, "embeddings_regularizer")
        self.activity_regularizer = regularizers.get(activity_regularizer, "activity_regularizer")
        self.embeddings_constraint = constraints.get(embeddings_constraint, "embeddings_constraint")
        self.mask_zero = arguments.flag("mask_zero", mask_zero)
        if input_length is not None:
            warnings.warn("Argument `input_length` is deprecated (Keras 3 ignores it). Just remove it.", stacklevel=3)

    def layer_config(self) -> dict[str, Any]:
        return {
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": self.embeddings_initializer.serialize(),
            "embeddings_regularizer": serialize_or_none(self.embeddings_regularizer),
            "activity_regularizer": serialize_or_none(self.activity_regularizer),
            "embeddings_constraint": serialize_or_none(self.embeddings_constraint),
            "mask_zero": self.mask_zero,
            "quantization_config": None,
        }

    def build_weights(self, input_shape: Shape) -> dict[str, np.ndarray]:
        return {"embeddings": self.embeddings_initializer((self.input_dim, self.output_dim))}

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        return [((*x.shape, self.output_dim), "float32", self.mask_zero)]


class Masking(Layer):
    class_name = masking.Masking.class_name
    prefix = "masking"
    writes_build_config = False

    def __init__(self, mask_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_value = arguments.finite_float("mask_value", mask_value)

    def layer_config(self) -> dict[str, Any]:
        return {"mask_value": self.mask_value}

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        return [(x.shape, x.dtype, True)]


class Dropout(Layer):
    """Identity at inference (SEMANTICS §6); the rate and seed are kept in the config."""

    class_name = dropout.Dropout.class_name
    prefix = "dropout"
    writes_build_config = False

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = arguments.fraction("rate", rate, allow_one=True)
        self.noise_shape = None if noise_shape is None else list(arguments.shape("noise_shape", noise_shape))
        self.seed = arguments.optional_int("seed", seed)

    def layer_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape}
