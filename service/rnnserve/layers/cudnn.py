"""The weights of Keras 2's `CuDNNGRU` / `CuDNNLSTM` layers as the plain `GRU` / `LSTM` layers hold them.

A cuDNN layer stores `kernel (F, gU)`, `recurrent_kernel (U, gU)` and `bias (2gU,)` (g = 3 for GRU, 4 for LSTM):
cuDNN's separate input and recurrent biases, and each gate's kernels in cuDNN's memory order. Keras converts
them when it loads such a file into the plain layer (tf_keras `hdf5_format._convert_rnn_weights`, the reference):

* input kernel, per gate block `k (F, U)`: `k.T.reshape((F, U), order="F")`;
* recurrent kernel, per gate block `k (U, U)`: `k.T`;
* GRU: the bias reshaped to `(2, 3U)` (input row, recurrent row) for `GRU(reset_after=True)`; LSTM: the input
  and recurrent halves summed into one `(4U,)` bias.

Gate orders are Keras' (GRU z, r, h; LSTM i, f, c, o) on both sides. The result is computed by
`GRU(reset_after=True, activation="tanh", recurrent_activation="sigmoid")` / `LSTM(activation="tanh",
recurrent_activation="sigmoid")`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def _per_gate(kernel: np.ndarray, gates: int, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.hstack([transform(block) for block in np.hsplit(np.asarray(kernel), gates)])


def _kernels(weights: Mapping[str, np.ndarray], gates: int) -> tuple[np.ndarray, np.ndarray]:
    kernel = _per_gate(weights["kernel"], gates, lambda k: k.T.reshape(k.shape, order="F"))
    recurrent = _per_gate(weights["recurrent_kernel"], gates, lambda k: k.T)
    return np.ascontiguousarray(kernel), np.ascontiguousarray(recurrent)


def cudnn_gru_weights(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`CuDNNGRU` weights as `GRU(reset_after=True)` weights: kernel, recurrent_kernel, bias (2, 3U)."""
    kernel, recurrent = _kernels(weights, 3)
    return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": np.asarray(weights["bias"]).reshape(2, -1)}


def cudnn_lstm_weights(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`CuDNNLSTM` weights as `LSTM` weights: kernel, recurrent_kernel, bias (4U,) = input + recurrent bias."""
    kernel, recurrent = _kernels(weights, 4)
    input_bias, recurrent_bias = np.split(np.asarray(weights["bias"]), 2)
    return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": input_bias + recurrent_bias}
