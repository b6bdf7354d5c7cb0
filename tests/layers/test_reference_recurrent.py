"""The recurrent loop: mask carry, go_backwards, streaming in chunks through states, time_major (SEMANTICS §3-4)."""

from __future__ import annotations

import numpy as np
import pytest
from layer_specs import rnn_config, rnn_weights

from rnnserve.errors import InvalidInput
from rnnserve.layers.cells import make_cell
from rnnserve.layers.recurrent import RecurrentLayer, run_recurrent

F, U = 3, 4
TOKENS = np.array([[0, 0, 4, 9, 0, 1, 0, 0]])
CELLS = [("SimpleRNN", {}), ("GRU", {"reset_after": True}), ("GRU", {"reset_after": False}), ("LSTM", {})]


def _cell(class_name: str, rng: np.random.Generator, **config: object):
    full = rnn_config(class_name, U, **config)
    return make_cell(class_name, full, rnn_weights(class_name, F, U, rng, reset_after=full.get("reset_after", True)))


def _unmasked_run(cell, x: np.ndarray, steps: list[int]) -> tuple[dict[int, np.ndarray], list[np.ndarray]]:
    """Step the cell only on `steps` (batch of 1): the outputs o_t and the final states."""
    states = [np.zeros((1, U)) for _ in range(cell.state_count)]
    outs = {}
    for t in steps:
        outs[t], states = cell.step(x[:, t], states)
    return outs, states


@pytest.mark.parametrize(("class_name", "config"), CELLS)
def test_masked_steps_carry_output_and_keep_state(class_name: str, config: dict) -> None:
    cell = _cell(class_name, np.random.default_rng(1), **config)
    x = np.random.default_rng(2).normal(size=(1, 8, F))
    mask = TOKENS != 0
    o, final = _unmasked_run(cell, x, [2, 3, 5])
    zero = np.zeros((1, U))
    y, states = run_recurrent(cell, x, mask, return_sequences=True)
    expected = [zero, zero, o[2], o[3], o[3], o[5], o[5], o[5]]
    np.testing.assert_allclose(y, np.stack(expected, axis=1), rtol=1e-12)
    for got, want in zip(states, final, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    last, _ = run_recurrent(cell, x, mask)
    np.testing.assert_allclose(last, o[5], rtol=1e-12)


@pytest.mark.parametrize(("class_name", "config"), CELLS)
def test_zero_output_for_mask(class_name: str, config: dict) -> None:
    cell = _cell(class_name, np.random.default_rng(3), **config)
    x = np.random.default_rng(4).normal(size=(1, 8, F))
    mask = TOKENS != 0
    carried, carried_states = run_recurrent(cell, x, mask, return_sequences=True)
    zeroed, zeroed_states = run_recurrent(cell, x, mask, return_sequences=True, zero_output_for_mask=True)
    np.testing.assert_array_equal(zeroed[0, ~mask[0]], 0.0)
    np.testing.assert_array_equal(zeroed[0, mask[0]], carried[0, mask[0]])
    for a, b in zip(carried_states, zeroed_states, strict=True):
        np.testing.assert_array_equal(a, b)
    last, _ = run_recurrent(cell, x, mask, zero_output_for_mask=True)  # the last step is masked
    np.testing.assert_array_equal(last, 0.0)


@pytest.mark.parametrize(("class_name", "config"), CELLS)
@pytest.mark.parametrize("masked", [False, True])
def test_go_backwards_equals_forward_on_reversed_input(class_name: str, config: dict, masked: bool) -> None:
    cell = _cell(class_name, np.random.default_rng(5), **config)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 6, F))
    mask = rng.random((2, 6)) > 0.4 if masked else None
    rev_mask = None if mask is None else mask[:, ::-1]
    y_back, s_back = run_recurrent(cell, x, mask, go_backwards=True, return_sequences=True)
    y_fwd, s_fwd = run_recurrent(cell, x[:, ::-1], rev_mask, return_sequences=True)
    np.testing.assert_array_equal(y_back, y_fwd)
    for a, b in zip(s_back, s_fwd, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("class_name", "config"), CELLS)
@pytest.mark.parametrize("chunks", [[6], [1, 5], [2, 2, 2], [1, 1, 1, 1, 1, 1]])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_stream_equals_whole_sequence(class_name: str, config: dict, chunks: list[int], masked: bool) -> None:
    layer = RecurrentLayer(_cell(class_name, np.random.default_rng(7), **config), return_sequences=True)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 6, F))
    mask = rng.random((2, 6)) > 0.3 if masked else np.ones((2, 6), bool)
    whole, whole_states = layer(x, mask)
    states, pieces, start = None, [], 0
    for size in chunks:
        y, states = layer(x[:, start : start + size], mask[:, start : start + size], states)
        pieces.append(y)
        start += size
    assert states is not None
    for a, b in zip(whole_states, states, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # Every call starts its carried output at zeros, so masked steps at a chunk's start differ by design;
    # unmasked steps must agree exactly.
    np.testing.assert_allclose(np.concatenate(pieces, axis=1)[mask], whole[mask], rtol=1e-12)


def test_time_major_is_a_transpose() -> None:
    cell = _cell("LSTM", np.random.default_rng(9))
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 5, F))
    mask = rng.random((2, 5)) > 0.3
    y, states = run_recurrent(cell, x, mask, return_sequences=True)
    y_tm, states_tm = run_recurrent(cell, x.transpose(1, 0, 2), mask.T, return_sequences=True, time_major=True)
    np.testing.assert_array_equal(y_tm, y.transpose(1, 0, 2))
    for a, b in zip(states, states_tm, strict=True):
        np.testing.assert_array_equal(a, b)
    last_tm, _ = run_recurrent(cell, x.transpose(1, 0, 2), mask.T, time_major=True)
    np.testing.assert_array_equal(last_tm, y[:, -1])


def test_initial_states_and_none_entries() -> None:
    cell = _cell("LSTM", np.random.default_rng(12))
    x = np.random.default_rng(13).normal(size=(2, 3, F))
    h0 = np.full((2, U), 0.5)
    y_given, _ = run_recurrent(cell, x, None, [h0, np.zeros((2, U))])
    y_none, _ = run_recurrent(cell, x, None, [h0, None])
    np.testing.assert_array_equal(y_given, y_none)
    assert not np.allclose(y_given, run_recurrent(cell, x)[0])


def test_input_errors() -> None:
    cell = _cell("GRU", np.random.default_rng(14))
    with pytest.raises(InvalidInput, match="time length 0"):
        run_recurrent(cell, np.zeros((1, 0, F)))
    with pytest.raises(InvalidInput, match="mask has shape"):
        run_recurrent(cell, np.zeros((1, 3, F)), np.ones((1, 4), bool))
    with pytest.raises(InvalidInput, match="initial state has shape"):
        run_recurrent(cell, np.zeros((1, 3, F)), None, [np.zeros((1, U + 1))])
    with pytest.raises(InvalidInput, match="expected 1 initial state"):
        run_recurrent(cell, np.zeros((1, 3, F)), None, [np.zeros((1, U))] * 2)
