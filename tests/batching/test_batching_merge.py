"""`select`, `merge` and `split` on their own, without an event loop: which calls form a batch, and that a merged
call split back gives every call exactly what a call of its own gives."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from rnnserve.batching.merge import CallItem, Queued, merge, select, split
from rnnserve.layers.model import ReferenceModel
from rnnserve.runtime.runner import RunResult


def queued(*calls: tuple[int, int, str | None]) -> list[Queued]:
    return [Queued(rows, steps, key) for rows, steps, key in calls]


# ---- select -------------------------------------------------------------------------------------------------------


def test_select_takes_calls_in_order_up_to_the_row_limit() -> None:
    chosen, rows = select(queued((1, 1, "a"), (2, 1, "b"), (1, 1, "c"), (1, 1, "d")), 4, equal_lengths=False)
    assert (chosen, rows) == ([0, 1, 2], 4)


def test_select_skips_a_call_that_does_not_fit_and_fills_with_later_ones() -> None:
    chosen, rows = select(queued((2, 1, "a"), (3, 1, "b"), (1, 1, "c")), 3, equal_lengths=False)
    assert (chosen, rows) == ([0, 2], 3)


def test_select_always_takes_the_first_call_even_when_it_alone_is_too_big() -> None:
    chosen, rows = select(queued((9, 1, "a"), (1, 1, "b")), 4, equal_lengths=False)
    assert (chosen, rows) == ([0], 9)


def test_select_never_puts_two_calls_of_one_key_in_a_batch() -> None:
    calls = queued((1, 1, "s1"), (1, 1, "s2"), (1, 1, "s1"), (1, 1, None), (1, 1, None))
    chosen, rows = select(calls, 8, equal_lengths=False)
    assert chosen == [0, 1, 3, 4]  # the second call of s1 waits; calls without a key never conflict
    assert rows == 4


def test_select_keeps_one_length_per_batch_for_models_that_read_backwards() -> None:
    calls = queued((1, 3, "a"), (1, 1, "b"), (1, 3, "c"), (1, 2, "d"))
    assert select(calls, 8, equal_lengths=True)[0] == [0, 2]
    assert select(calls, 8, equal_lengths=False)[0] == [0, 1, 2, 3]


def test_select_of_nothing_is_an_empty_batch() -> None:
    assert select([], 4, equal_lengths=False) == ([], 0)


# ---- merge and split ----------------------------------------------------------------------------------------------


def own_runs(model: ReferenceModel, items: list[CallItem]) -> list[RunResult]:
    return [model.run(item.inputs, item.states, item.mask) for item in items]


def merged_run(model: ReferenceModel, items: list[CallItem]) -> list[RunResult]:
    merged, shapes = merge(model.signature, items)
    return split(model.signature, model.run(merged.inputs, merged.states, merged.mask), shapes)


def assert_same(got: list[RunResult], expected: list[RunResult]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert list(g.outputs) == list(e.outputs)
        for name in e.outputs:
            assert g.outputs[name].shape == e.outputs[name].shape
            np.testing.assert_allclose(g.outputs[name], e.outputs[name], rtol=1e-6, atol=1e-6)
        for gs, es in zip(g.states, e.states, strict=True):
            np.testing.assert_allclose(gs, es, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["SimpleRNN", "GRU", "LSTM"])
def test_calls_of_different_lengths_and_batches_split_back_exactly(
    make_model: Callable[..., ReferenceModel], kind: str, rng: np.random.Generator
) -> None:
    model = make_model(kind)
    states = [rng.normal(size=(2, 4)).astype(np.float32) for _ in model.signature.states]
    items = [
        CallItem({"x": rng.normal(size=(1, 1, 3)).astype(np.float32)}, None, None),
        CallItem({"x": rng.normal(size=(2, 4, 3)).astype(np.float32)}, states, None),
        CallItem({"x": rng.normal(size=(1, 2, 3)).astype(np.float32)}, None, None),
    ]
    assert_same(merged_run(model, items), own_runs(model, items))


def test_masks_of_merged_calls_are_kept_and_padding_is_masked(
    make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    model = make_model("GRU")
    mask = np.array([[True, False, True]])
    items = [
        CallItem({"x": rng.normal(size=(1, 3, 3)).astype(np.float32)}, None, mask),
        CallItem({"x": rng.normal(size=(1, 1, 3)).astype(np.float32)}, None, None),
    ]
    merged, _ = merge(model.signature, items)
    assert merged.mask is not None
    np.testing.assert_array_equal(merged.mask, [[True, False, True], [True, False, False]])
    assert_same(merged_run(model, items), own_runs(model, items))


def test_calls_of_one_length_without_masks_merge_without_a_mask(
    make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    model = make_model("SimpleRNN")
    items = [CallItem({"x": rng.normal(size=(1, 1, 3)).astype(np.float32)}, None, None) for _ in range(3)]
    merged, shapes = merge(model.signature, items)
    assert merged.mask is None and shapes == [(1, 1)] * 3
    assert merged.inputs["x"].shape == (3, 1, 3)
    assert_same(merged_run(model, items), own_runs(model, items))


def test_the_last_output_only_model_splits_rows(
    make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    model = make_model("LSTM", return_sequences=False)
    items = [CallItem({"x": rng.normal(size=(b, t, 3)).astype(np.float32)}, None, None) for b, t in ((1, 2), (3, 2))]
    got = merged_run(model, items)
    assert [r.outputs["lstm"].shape for r in got] == [(1, 4), (3, 4)]
    assert_same(got, own_runs(model, items))


def test_time_major_models_merge_on_their_batch_axis(
    make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    model = make_model("SimpleRNN", time_major=True)
    assert model.signature.time_major
    items = [CallItem({"x": rng.normal(size=(t, b, 3)).astype(np.float32)}, None, None) for t, b in ((2, 1), (3, 2))]
    merged, shapes = merge(model.signature, items)
    assert merged.inputs["x"].shape == (3, 3, 3) and shapes == [(1, 2), (2, 3)]
    assert_same(merged_run(model, items), own_runs(model, items))
