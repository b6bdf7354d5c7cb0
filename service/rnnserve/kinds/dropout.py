"""Dropout: the identity at inference (SEMANTICS §6); the mask passes through."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult
from rnnserve.kinds.base import REQUIRED, LayerKind, register_kind
from rnnserve.kinds.dense import single_input


class Dropout(LayerKind):
    """Config: `name, rate, noise_shape, seed`; no weights."""

    class_name = "Dropout"
    per_step = True
    drops_in_training = True  # Monte-Carlo dropout applies its `rate` (rnnserve.mc_dropout)
    defaults = {"rate": REQUIRED, "noise_shape": None, "seed": None}

    def step_reference(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> Callable[[np.ndarray], np.ndarray]:
        from rnnserve.layers.core import Dropout as DropoutReference

        return DropoutReference.from_config(config, weights, name)

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        return LayerResult((single_input(call),))


register_kind(Dropout())
