"""CuDNNGRU (Keras 2 / TF 1.x `.h5` files): a GRU with cuDNN's weight layout and fixed arguments.

It computes `GRU(reset_after=True, activation="tanh", recurrent_activation="sigmoid", use_bias=True)` on its weights
converted as Keras converts them when it loads such a file into a plain GRU (`rnnserve.layers.cudnn`). Its config
holds `units`, the initializers, regularizers and constraints and the loop arguments `return_sequences,
return_state, go_backwards, stateful, time_major`; the normalised config is a GRU's with the fixed values. Its
stored weights are `kernel (F, 3U)`, `recurrent_kernel (U, 3U)` and `bias (6U,)`; the spec keeps them so, and the
reference and the converter convert them. States, masks, streaming, Bidirectional: as GRU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnserve.errors import UnsupportedLayer
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.converters.recurrent import Cell
from rnnserve.importers.jsonish import short
from rnnserve.importers.keras_layers import describe
from rnnserve.kinds import gru
from rnnserve.kinds.base import Shape, register_kind
from rnnserve.kinds.config import plain
from rnnserve.kinds.recurrent import RecurrentKind
from rnnserve.layers.cells import GRUCell
from rnnserve.layers.cudnn import cudnn_gru_weights

# What a cuDNN RNN always computes (its config cannot say otherwise).
CUDNN_FIXED: Mapping[str, Any] = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "use_bias": True,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "unroll": False,
    "zero_output_for_mask": False,
}


def normalise_cudnn(kind: RecurrentKind, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
    """The plain layer's normalised config, refusing a fixed argument set to anything else."""
    normalised = plain(kind, config, name, keras_version)
    fixed = [key for key in kind.defaults if key in CUDNN_FIXED or key == "reset_after"]
    for key in fixed:
        if normalised[key] != kind.defaults[key]:
            raise UnsupportedLayer(
                f"{describe(name, kind.class_name)}: {key}={short(config.get(key))} is not a cuDNN layer's"
            )
    return normalised


class CuDNNGRU(gru.GRU):
    class_name = "CuDNNGRU"
    defaults = {**gru.GRU.defaults, **CUDNN_FIXED, "reset_after": True}

    def normalise(self, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
        return normalise_cudnn(self, config, name, keras_version)

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        units = int(config["units"])
        return {"kernel": (in_features, 3 * units), "recurrent_kernel": (units, 3 * units), "bias": (6 * units,)}

    def make_cell(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> GRUCell:
        return GRUCell.from_config(config, cudnn_gru_weights(weights), name)

    def build_cell(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell:
        return gru.build_cell(g, config, cudnn_gru_weights(weights), name, native=native)


register_kind(CuDNNGRU())
