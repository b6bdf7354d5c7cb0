"""A Keras `ReLU` layer kind in one module: the layer kind that tests/kinds/test_one_module_kind.py adds.

Keras: `max_value` where x >= max_value, `x` where threshold <= x < max_value, `negative_slope * (x - threshold)`
below the threshold. It acts on each timestep alone (`per_step`), so the defaults of `LayerKind` give it no
weights, no states, the mask of its input, and sessions may stream it; the kind adds its config keys, its numpy
reference and its ONNX converter. Registered by the test (`register_kind(ReLU())`), not by rnnserve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.kinds import LayerKind


def _options(config: Mapping[str, Any]) -> tuple[float | None, float, float]:
    max_value = config.get("max_value")
    return (
        None if max_value is None else float(max_value),
        float(config.get("negative_slope", 0.0)),
        float(config.get("threshold", 0.0)),
    )


class ReLU(LayerKind):
    class_name = "ReLU"
    per_step = True
    defaults = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}

    def step_reference(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> Callable[[np.ndarray], np.ndarray]:
        max_value, slope, threshold = _options(config)

        def relu(x: np.ndarray) -> np.ndarray:
            y = np.where(x >= threshold, x, slope * (x - threshold))
            return y if max_value is None else np.minimum(y, max_value)

        return relu

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        (x,) = call.inputs
        max_value, slope, threshold = _options(call.layer.config)
        below = g.op("Mul", g.op("Sub", x.name, g.scalar(threshold)), g.scalar(slope))
        y = g.op("Where", g.op("GreaterOrEqual", x.name, g.scalar(threshold)), x.name, below, hint=call.layer.name)
        if max_value is not None:
            y = g.op("Min", y, g.scalar(max_value))
        return LayerResult((Value(y, x.shape, x.elem_type, mask=x.mask, time_major=x.time_major),))
