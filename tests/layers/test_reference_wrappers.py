"""Bidirectional: merge modes, backward flip, forced zero outputs at masked steps, states, time_major."""

from __future__ import annotations

import numpy as np
import pytest
from layer_specs import bidirectional_layer

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.layers.recurrent import RecurrentLayer
from rnnserve.layers.wrappers import Bidirectional

F, U, T = 3, 4, 6


def _wrapper(class_name: str = "LSTM", merge_mode: str | None = "concat", **config: object) -> Bidirectional:
    spec = bidirectional_layer(class_name, "bi", F, U, np.random.default_rng(31), "x", merge_mode, **config)
    return Bidirectional.from_config(spec.config, spec.weights, spec.name)


def _halves(layer: Bidirectional, x: np.ndarray, mask: np.ndarray | None):
    """The two directions run on their own, the backward one flipped back to input order."""
    y, fs = layer.forward(x, mask)
    y_rev, bs = layer.backward(x, mask)
    if layer.return_sequences:
        y_rev = y_rev[:, ::-1]
    return y, y_rev, fs + bs


@pytest.mark.parametrize(
    ("mode", "merge"),
    [
        ("concat", lambda a, b: [np.concatenate([a, b], -1)]),
        ("sum", lambda a, b: [a + b]),
        ("mul", lambda a, b: [a * b]),
        ("ave", lambda a, b: [(a + b) / 2]),
        (None, lambda a, b: [a, b]),
    ],
)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_merge_modes(mode: str | None, merge, return_sequences: bool) -> None:
    layer = _wrapper("GRU", mode, return_sequences=return_sequences)
    x = np.random.default_rng(32).normal(size=(2, T, F))
    ys, states = layer(x)
    y, y_rev, _ = _halves(layer, x, None)
    expected = merge(y, y_rev)
    assert len(ys) == len(expected)
    for got, want in zip(ys, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_backward_half_reads_reversed_input() -> None:
    layer = _wrapper("SimpleRNN", return_sequences=True)
    assert layer.backward.go_backwards and not layer.forward.go_backwards
    x = np.random.default_rng(33).normal(size=(1, T, F))
    (y,), _ = layer(x)
    reversed_run, _ = RecurrentLayer(layer.backward.cell, return_sequences=True)(x[:, ::-1])
    np.testing.assert_array_equal(y[:, :, U:], reversed_run[:, ::-1])  # y[:, t, U:] == y_bwd[:, T-1-t]


def test_masked_steps_are_zero_with_return_sequences() -> None:
    layer = _wrapper("LSTM", return_sequences=True)
    assert layer.forward.zero_output_for_mask and layer.backward.zero_output_for_mask
    x = np.random.default_rng(34).normal(size=(2, T, F))
    mask = np.array([[0, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 0]], dtype=bool)
    (y,), _ = layer(x, mask)
    np.testing.assert_array_equal(y[~mask], 0.0)
    assert np.all(np.abs(y[mask]) > 0)


def test_without_return_sequences_masked_output_is_carried() -> None:
    layer = _wrapper("GRU", "concat", return_sequences=False)
    assert not layer.forward.zero_output_for_mask
    x = np.random.default_rng(35).normal(size=(1, T, F))
    mask = np.array([[1, 1, 0, 1, 0, 0]], dtype=bool)
    (y,), states = layer(x, mask)
    np.testing.assert_array_equal(y[:, :U], states[0])  # forward: output after the last unmasked step
    np.testing.assert_array_equal(y[:, U:], states[1])  # backward: after input step 0


def test_states_are_forward_then_backward_and_initial_states_split() -> None:
    layer = _wrapper("LSTM", return_state=True, return_sequences=True)
    rng = np.random.default_rng(36)
    x = rng.normal(size=(2, T, F))
    init = [rng.normal(size=(2, U)) for _ in range(4)]
    _, states = layer(x, None, init)
    _, _, expected = _halves(layer, x, None)
    _, fwd = layer.forward(x, None, init[:2])
    _, bwd = layer.backward(x, None, init[2:])
    for got, want in zip(states, fwd + bwd, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(states[0], expected[0])


def test_time_major_flips_the_time_axis() -> None:
    layer = _wrapper("GRU", "concat", return_sequences=True, time_major=True)
    batch_major = _wrapper("GRU", "concat", return_sequences=True)
    x = np.random.default_rng(37).normal(size=(2, T, F))
    (y_tm,), _ = layer(x.transpose(1, 0, 2))
    (y,), _ = batch_major(x)
    np.testing.assert_allclose(y_tm, y.transpose(1, 0, 2), rtol=1e-12)


def test_config_errors() -> None:
    spec = bidirectional_layer("GRU", "bi", F, U, np.random.default_rng(38), "x")
    with pytest.raises(ModelFileError, match="merge_mode"):
        Bidirectional.from_config({**spec.config, "merge_mode": "max"}, spec.weights, "bi")
    with pytest.raises(UnsupportedLayer, match="Dense"):
        Bidirectional.from_config({"layer": {"class_name": "Dense", "config": {}}}, {}, "bi")
    with pytest.raises(ModelFileError, match="'bi/backward'.*kernel"):
        Bidirectional.from_config(spec.config, {k: v for k, v in spec.weights.items() if k.startswith("f")}, "bi")
