"""CuDNNLSTM (Keras 2 / TF 1.x `.h5` files): an LSTM with cuDNN's weight layout and fixed arguments.

It computes `LSTM(activation="tanh", recurrent_activation="sigmoid", use_bias=True)` on its weights converted as
Keras converts them when it loads such a file into a plain LSTM (`rnnserve.layers.cudnn`: per-gate kernel
transposes, input and recurrent biases summed). Config: `units`, `unit_forget_bias` (an initializer option), the
initializers, regularizers and constraints and `return_sequences, return_state, go_backwards, stateful,
time_major`. Stored weights: `kernel (F, 4U)`, `recurrent_kernel (U, 4U)`, `bias (8U,)`. States `h, c`, as LSTM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnserve.export.builder import GraphBuilder
from rnnserve.export.converters.recurrent import Cell
from rnnserve.kinds import lstm
from rnnserve.kinds.base import Shape, register_kind
from rnnserve.kinds.cudnn_gru import CUDNN_FIXED, normalise_cudnn
from rnnserve.layers.cells import LSTMCell
from rnnserve.layers.cudnn import cudnn_lstm_weights


class CuDNNLSTM(lstm.LSTM):
    class_name = "CuDNNLSTM"
    defaults = {**lstm.LSTM.defaults, **CUDNN_FIXED}

    def normalise(self, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
        return normalise_cudnn(self, config, name, keras_version)

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        units = int(config["units"])
        return {"kernel": (in_features, 4 * units), "recurrent_kernel": (units, 4 * units), "bias": (8 * units,)}

    def make_cell(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> LSTMCell:
        return LSTMCell.from_config(config, cudnn_lstm_weights(weights), name)

    def build_cell(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell:
        return lstm.build_cell(g, config, cudnn_lstm_weights(weights), name, native=native)


register_kind(CuDNNLSTM())
