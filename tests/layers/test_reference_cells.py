"""Cells: one step against the SEMANTICS.md §1 formulas written out gate by gate, and weight checks."""

from __future__ import annotations

import numpy as np
import pytest
from layer_specs import rnn_config, rnn_weights

from rnnserve.errors import InvalidArgument, ModelFileError
from rnnserve.layers.cells import GRUCell, LSTMCell, SimpleRNNCell, make_cell

F, U, B = 3, 4, 2


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def _inputs(rng: np.random.Generator, states: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
    return rng.normal(size=(B, F)), [rng.normal(size=(B, U)) for _ in range(states)]


def test_simple_rnn_step(rng: np.random.Generator) -> None:
    w = rnn_weights("SimpleRNN", F, U, rng)
    cell = SimpleRNNCell.from_config(rnn_config("SimpleRNN", U, activation="relu"), w)
    x, (h,) = _inputs(rng)
    y, (h_new,) = cell.step(x, [h])
    expected = np.maximum(x @ w["kernel"] + w["bias"] + h @ w["recurrent_kernel"], 0.0)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert y is h_new


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_step(rng: np.random.Generator, reset_after: bool) -> None:
    w = rnn_weights("GRU", F, U, rng, reset_after=reset_after)
    cell = GRUCell.from_config(rnn_config("GRU", U, reset_after=reset_after), w)
    x, (h,) = _inputs(rng)
    k, r_k = w["kernel"].astype(float), w["recurrent_kernel"].astype(float)
    kz, kr, kh = k[:, :U], k[:, U : 2 * U], k[:, 2 * U :]
    rz, rr, rh = r_k[:, :U], r_k[:, U : 2 * U], r_k[:, 2 * U :]
    if reset_after:
        bi, bh = w["bias"][0], w["bias"][1]
        z = sigmoid(x @ kz + bi[:U] + h @ rz + bh[:U])
        r = sigmoid(x @ kr + bi[U : 2 * U] + h @ rr + bh[U : 2 * U])
        hh = np.tanh(x @ kh + bi[2 * U :] + r * (h @ rh + bh[2 * U :]))
    else:
        b = w["bias"]
        z = sigmoid(x @ kz + b[:U] + h @ rz)
        r = sigmoid(x @ kr + b[U : 2 * U] + h @ rr)
        hh = np.tanh(x @ kh + b[2 * U :] + (r * h) @ rh)
    y, (h_new,) = cell.step(x, [h])
    np.testing.assert_allclose(y, z * h + (1 - z) * hh, rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(y, h_new)


def test_lstm_step(rng: np.random.Generator) -> None:
    w = rnn_weights("LSTM", F, U, rng)
    cell = LSTMCell.from_config(rnn_config("LSTM", U, recurrent_activation="hard_sigmoid"), w)
    x, (h, c) = _inputs(rng, 2)
    zz = x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]

    def hs(v: np.ndarray) -> np.ndarray:
        return np.clip(v / 6.0 + 0.5, 0.0, 1.0)

    i, f, g, o = hs(zz[:, :U]), hs(zz[:, U : 2 * U]), np.tanh(zz[:, 2 * U : 3 * U]), hs(zz[:, 3 * U :])
    c_new = f * c + i * g
    y, (h2, c2) = cell.step(x, [h, c])
    np.testing.assert_allclose(c2, c_new, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(y, o * np.tanh(c_new), rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(y, h2)


@pytest.mark.parametrize("class_name", ["SimpleRNN", "GRU", "LSTM"])
def test_without_bias(rng: np.random.Generator, class_name: str) -> None:
    w = rnn_weights(class_name, F, U, rng, use_bias=False)
    cell = make_cell(class_name, rnn_config(class_name, U, use_bias=False), w)
    x, states = _inputs(rng, 2 if class_name == "LSTM" else 1)
    with_zero_bias = make_cell(
        class_name,
        rnn_config(class_name, U),
        {**w, "bias": np.zeros((2, 3 * U) if class_name == "GRU" else w["kernel"].shape[1])},
    )
    np.testing.assert_allclose(cell.step(x, states)[0], with_zero_bias.step(x, states)[0], rtol=1e-12)


def test_bias_given_with_use_bias_false_is_rejected(rng: np.random.Generator) -> None:
    with pytest.raises(ModelFileError, match="use_bias"):
        make_cell("LSTM", rnn_config("LSTM", U, use_bias=False), rnn_weights("LSTM", F, U, rng), "enc")


@pytest.mark.parametrize(
    ("weights_change", "message"),
    [
        ({"kernel": np.zeros((F, 2 * U))}, "kernel"),
        ({"recurrent_kernel": np.zeros((U, U))}, "recurrent_kernel"),
        ({"bias": np.zeros(3 * U)}, "bias"),  # reset_after=True needs (2, 3U)
    ],
)
def test_bad_weight_shapes_name_layer_and_weight(
    rng: np.random.Generator, weights_change: dict[str, np.ndarray], message: str
) -> None:
    w = {**rnn_weights("GRU", F, U, rng), **weights_change}
    with pytest.raises(ModelFileError, match=f"'dec'.*{message}"):
        make_cell("GRU", rnn_config("GRU", U), w, "dec")


def test_missing_weight(rng: np.random.Generator) -> None:
    w = rnn_weights("SimpleRNN", F, U, rng)
    del w["recurrent_kernel"]
    with pytest.raises(ModelFileError, match="recurrent_kernel"):
        make_cell("SimpleRNN", rnn_config("SimpleRNN", U), w, "rnn")


def test_glu_cannot_be_a_cell_activation(rng: np.random.Generator) -> None:
    with pytest.raises(InvalidArgument, match="glu"):
        make_cell("GRU", rnn_config("GRU", U, recurrent_activation="glu"), rnn_weights("GRU", F, U, rng))


def test_not_a_recurrent_class(rng: np.random.Generator) -> None:
    with pytest.raises(ModelFileError, match="Dense"):
        make_cell("Dense", rnn_config("SimpleRNN", U), rnn_weights("SimpleRNN", F, U, rng), "d")
