"""rnnserve computes what Keras computes: every fixture case, on the numpy reference and on onnxruntime.

Each case is a model file saved by real Keras plus the outputs Keras gave (`make_fixtures.py`). The tolerance is
|d| <= 1e-5 + 1e-5*|y| everywhere. Test ids name the case (its model file).
"""

from __future__ import annotations

import numpy as np
import pytest
from parity_harness import (
    LOOP_OPS,
    Feed,
    Parity,
    ParityCase,
    assert_close,
    batch_size,
    case_feed,
    graph_ops,
    load_cases,
    run_feed,
    state_index,
    time_steps,
)

from rnnserve.runtime.runner import Runner, RunResult


def check_outputs(result: RunResult, runner: Runner, case: ParityCase, label: str, prefix: str = "") -> None:
    """Every model output, in order, and every state Keras returned (return_state), against Keras."""
    names = [o.name for o in runner.signature.outputs]
    expected = case.keras_outputs(prefix)
    assert len(names) == len(expected), f"{label}: signature outputs {names}, Keras outputs {list(case.output_names)}"
    for k, (name, want) in enumerate(zip(names, expected, strict=True)):
        assert_close(result.outputs[name], want, f"{label} output {k} {name!r}")
    for state_name, k in case.state_outputs.items():
        got = result.states[state_index(runner.signature, state_name)]
        assert_close(got, expected[k], f"{label} final state {state_name!r} (Keras output {k})")


def test_fixture_index_is_complete() -> None:
    cases = load_cases()
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert case.file.is_file(), f"{case.id}: missing model file {case.file.name}"
        prefix = "b0_" if case.stateful else ""
        recorded = [key for key in case.arrays if key.startswith(f"{prefix}out_")]
        assert len(recorded) == len(case.output_names), f"{case.id}: {recorded} vs outputs {case.output_names}"


def test_outputs_match_keras(case: ParityCase, engine: str, parity: Parity) -> None:
    runner = parity.runner(case, engine)
    result = run_feed(runner, case_feed(case, runner.signature))
    check_outputs(result, runner, case, f"{case.id} [{engine}]")


@pytest.mark.parametrize("unroll", [False, True], ids=["looped", "unrolled"])
def test_graph_is_unrolled_or_looped_with_the_same_numbers(loop_case: ParityCase, unroll: bool, parity: Parity) -> None:
    signature = parity.signature(loop_case)
    steps = time_steps(signature, case_feed(loop_case, signature).inputs)
    graph = parity.graph(loop_case, unroll=unroll, steps=steps)
    loops = sorted(set(graph_ops(graph.model.graph)) & LOOP_OPS)
    if unroll:
        assert not loops, f"{loop_case.id}: the unroll=True graph holds {loops} nodes"
    else:
        assert loops, f"{loop_case.id}: the unroll=False graph holds no Scan/Loop node"
    result = run_feed(graph, case_feed(loop_case, graph.signature))
    check_outputs(result, graph, loop_case, f"{loop_case.id} [to_onnx unroll={unroll}]")


def chunk_bounds(steps: int, pieces: int) -> list[tuple[int, int]]:
    """Uneven consecutive chunks covering [0, steps); three pieces start with a single step."""
    cuts = [steps // 2 - 1] if pieces == 2 else [1, 1 + (steps - 1) // 2]
    edges = [0, *cuts, steps]
    return list(zip(edges[:-1], edges[1:], strict=True))


def time_slice(array: np.ndarray, start: int, stop: int, time_axis: int) -> np.ndarray:
    return np.take(array, np.arange(start, stop), axis=time_axis)


def stream(runner: Runner, feed: Feed, bounds: list[tuple[int, int]]) -> list[RunResult]:
    """Feed a sequence chunk after chunk, each chunk starting from the states the previous one returned."""
    time_axis = 0 if runner.signature.time_major else 1
    states = feed.states
    parts = []
    for start, stop in bounds:
        inputs = {name: time_slice(value, start, stop, time_axis) for name, value in feed.inputs.items()}
        mask = None if feed.mask is None else feed.mask[:, start:stop]
        part = runner.run(inputs, states=states, mask=mask)
        parts.append(part)
        states = part.states
    return parts


@pytest.mark.parametrize("pieces", [2, 3], ids=["2chunks", "3chunks"])
def test_stream_in_chunks_matches_the_whole_sequence(
    stream_case: ParityCase, pieces: int, engine: str, parity: Parity
) -> None:
    runner = parity.runner(stream_case, engine)
    feed = case_feed(stream_case, runner.signature)
    steps = time_steps(runner.signature, feed.inputs)
    bounds = chunk_bounds(steps, pieces)
    parts = stream(runner, feed, bounds)
    whole = run_feed(runner, feed)
    label = f"{stream_case.id} [{engine}] in chunks {bounds}"
    valid = stream_case.arrays.get("valid", np.ones((batch_size(runner.signature, feed.inputs), steps), bool))
    time_axis = 0 if runner.signature.time_major else 1
    for k, (info, want) in enumerate(zip(runner.signature.outputs, stream_case.keras_outputs(), strict=True)):
        if want.ndim >= 3:  # a sequence: masked steps at a chunk's start carry nothing from earlier chunks
            got = np.concatenate([p.outputs[info.name] for p in parts], axis=time_axis)
            unmasked = (valid.T if time_axis == 0 else valid)[..., None]
            got = np.where(unmasked, got, want)  # compare unmasked steps only, keeping positions in the report
            assert_close(got, want, f"{label} output {k} {info.name!r} at unmasked steps")
        else:  # last output: the last chunk's, for the rows with an unmasked step in it
            rows = valid[:, bounds[-1][0] :].any(axis=1)
            assert_close(parts[-1].outputs[info.name][rows], want[rows], f"{label} output {k} {info.name!r}")
    for i, info in enumerate(runner.signature.states):
        assert_close(parts[-1].states[i], whole.states[i], f"{label} final state {info.name!r} vs one run")


def test_stateful_batches_match_keras(stateful_case: ParityCase, engine: str, parity: Parity) -> None:
    """Keras' stateful model fed batch after batch (with resets) = runs carrying the states between them."""
    assert stateful_case.stateful is not None
    runner = parity.runner(stateful_case, engine)
    sig = runner.signature
    names = list(stateful_case.stateful["states"])
    positions = [state_index(sig, name) for name in names]
    rows = int(stateful_case.arrays["b0_in_x"].shape[0])
    assert sig.stateful, f"{stateful_case.id}: signature does not say stateful"
    assert sig.batch_size == rows, f"{stateful_case.id}: signature batch {sig.batch_size}, Keras fixed batch {rows}"
    states: list[np.ndarray] | None = None
    for j, batch in enumerate(stateful_case.stateful["batches"]):
        label = f"{stateful_case.id} [{engine}] batch {j} (reset before: {batch['reset']})"
        if batch["reset"] == "zeros":
            states = None
        elif batch["reset"] == "values":
            states = [np.zeros((rows, int(s.shape[1] or 0)), np.float32) for s in sig.states]
            for i, position in enumerate(positions):
                states[position] = stateful_case.arrays[f"b{j}_reset_{i}"]
        feed = case_feed(stateful_case, sig, prefix=f"b{j}_")
        result = runner.run(feed.inputs, states=states, mask=feed.mask)
        check_outputs(result, runner, stateful_case, label, prefix=f"b{j}_")
        for i, (name, position) in enumerate(zip(names, positions, strict=True)):
            assert_close(result.states[position], stateful_case.arrays[f"b{j}_state_{i}"], f"{label} state {name!r}")
        states = result.states
