"""Dense: `activation(x K + b)` on the last axis, for any rank; passes the incoming mask on.

Config: `name, units, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint`. Weights `kernel (F, U)`, `bias (U,)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.export.activations import emit_activation
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.export.weights import check_weights
from rnnserve.kinds.base import REQUIRED, LayerKind, Shape, register_kind
from rnnserve.layers.activations import SHAPE_CHANGING
from rnnserve.spec import LayerSpec


def single_input(call: LayerCall) -> Value:
    if len(call.inputs) != 1:
        raise ModelFileError(
            f"layer {call.layer.name!r} ({call.layer.class_name}) takes one input, got {len(call.inputs)}",
            layer=call.layer.name,
        )
    return call.inputs[0]


def dense(g: GraphBuilder, layer: LayerSpec, x: Value) -> Value:
    """Apply Dense `layer` to `x` (also the inner layer of TimeDistributed)."""
    check_weights(layer, x.shape[-1])
    config = layer.config
    units = int(config["units"])
    y = g.op("MatMul", x.name, g.initializer(layer.weights["kernel"], f"{layer.name}/kernel"), hint=layer.name)
    if "bias" in layer.weights:
        y = g.op("Add", y, g.initializer(layer.weights["bias"], f"{layer.name}/bias"), hint=layer.name)
    activation = str(config.get("activation", "linear"))
    y = emit_activation(g, activation, y)
    if activation in SHAPE_CHANGING:  # glu halves the last axis
        units //= 2
    return Value(y, (*x.shape[:-1], units), mask=x.mask, time_major=x.time_major)


class Dense(LayerKind):
    class_name = "Dense"
    per_step = True
    defaults = {
        "units": REQUIRED,
        "activation": "linear",
        "use_bias": True,
        "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros",
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    }
    activation_keys = ("activation",)

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        units = int(config["units"])
        shapes: dict[str, Shape] = {"kernel": (in_features, units)}
        if config.get("use_bias", True):
            shapes["bias"] = (units,)
        return shapes

    def output_features(self, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
        return [int(config["units"])]

    def step_reference(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> Callable[[np.ndarray], np.ndarray]:
        from rnnserve.layers.core import Dense as DenseReference

        return DenseReference.from_config(config, weights, name)

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        return LayerResult((dense(g, call.layer, single_input(call)),))


register_kind(Dense())
