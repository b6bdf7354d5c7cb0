"""Choose, merge and split the calls of one batch. Pure numpy, no event loop: tests drive them directly.

`select` picks which queued calls go into the next batch: at most `max_rows` rows (a call larger than that runs
alone), never two calls with the same key (two steps of one session), and, for models that read time backwards,
only calls of one length.

`merge` concatenates the chosen calls' rows into one call and `split` cuts the result back. Calls may have
different numbers of timesteps: shorter ones are padded at the end with masked steps, which keep the state
unchanged and carry the last output (Keras masking), so each call's outputs sliced back to its own length and its
final states are exactly what a call of its own gives. A model with a `go_backwards` layer would read the padding
first; `select(equal_lengths=True)` keeps such models' batches to one length.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

from rnnserve.runtime.runner import Feeds, RunResult
from rnnserve.signature import ModelSignature


class CallItem(NamedTuple):
    """One model call: already validated inputs in the model's layout, its states and mask."""

    inputs: Feeds
    states: Sequence[np.ndarray] | None
    mask: np.ndarray | None


class Queued:
    """A call waiting for a batch: its rows, timesteps and key (None: no constraint)."""

    __slots__ = ("rows", "steps", "key")

    def __init__(self, rows: int, steps: int, key: Hashable | None) -> None:
        self.rows, self.steps, self.key = rows, steps, key


def select(queued: Iterable[Queued], max_rows: int, *, equal_lengths: bool) -> tuple[list[int], int]:
    """Indices (in queue order) of the calls that form the next batch, and their rows.

    Takes calls first come first served while they fit; a call that does not fit, repeats a key already taken or
    (with `equal_lengths`) has another length than the first one waits for a later batch. The first call is
    always taken, even when it alone exceeds `max_rows`."""
    chosen: list[int] = []
    rows = 0
    keys: set[Hashable] = set()
    steps: int | None = None
    for index, call in enumerate(queued):
        if chosen and rows + call.rows > max_rows:
            if rows >= max_rows:
                break
            continue
        if call.key is not None and call.key in keys:
            continue
        if equal_lengths and steps is not None and call.steps != steps:
            continue
        chosen.append(index)
        rows += call.rows
        steps = call.steps if steps is None else steps
        if call.key is not None:
            keys.add(call.key)
    return chosen, rows


def _axes(signature: ModelSignature) -> tuple[int, int]:
    """(batch axis, time axis) of the model's inputs and sequence outputs."""
    return (1, 0) if signature.time_major else (0, 1)


def item_shape(signature: ModelSignature, item: CallItem) -> tuple[int, int]:
    """(rows, timesteps) of an item."""
    batch_axis, time_axis = _axes(signature)
    first = np.shape(item.inputs[signature.inputs[0].name])
    return first[batch_axis], first[time_axis]


def _pad_time(array: np.ndarray, time_axis: int, length: int) -> np.ndarray:
    missing = length - array.shape[time_axis]
    if missing == 0:
        return array
    widths = [(0, 0)] * array.ndim
    widths[time_axis] = (0, missing)
    return np.pad(array, widths)


def merge(
    signature: ModelSignature, items: Sequence[CallItem], shapes: list[tuple[int, int]] | None = None
) -> tuple[CallItem, list[tuple[int, int]]]:
    """One call holding every item's rows, and each item's (rows, timesteps) to split the result with (`shapes`,
    when the caller knows them already)."""
    batch_axis, time_axis = _axes(signature)
    if shapes is None:
        shapes = [item_shape(signature, item) for item in items]
    longest = max(t for _, t in shapes)
    padded = any(t != longest for _, t in shapes)
    if padded:
        inputs = {
            info.name: np.concatenate(
                [_pad_time(np.asarray(item.inputs[info.name]), time_axis, longest) for item in items], axis=batch_axis
            )
            for info in signature.inputs
        }
    else:  # the common case (streams of one timestep each): plain concatenation
        inputs = {
            info.name: np.concatenate([item.inputs[info.name] for item in items], axis=batch_axis)
            for info in signature.inputs
        }
    mask = None
    if padded or any(item.mask is not None for item in items):
        masks = []
        for item, (rows, steps) in zip(items, shapes, strict=True):
            own = np.ones((rows, steps), dtype=bool) if item.mask is None else np.asarray(item.mask, dtype=bool)
            masks.append(_pad_time(own, 1, longest))  # padding is False: masked, state unchanged
        mask = np.concatenate(masks)
    states: list[np.ndarray] | None = None
    if signature.states:
        given = [item.states for item in items if item.states is not None]
        if len(given) == len(items):  # every call brings its states (a session's): plain concatenation
            states = [np.concatenate([own[k] for own in given]) for k in range(len(signature.states))]
        else:
            states = [
                np.concatenate(
                    [_item_state(item, k, rows, info.shape[-1]) for item, (rows, _) in zip(items, shapes, strict=True)]
                )
                for k, info in enumerate(signature.states)
            ]
    return CallItem(inputs, states, mask), shapes


def _item_state(item: CallItem, k: int, rows: int, units: int | None) -> np.ndarray:
    if item.states is None:
        return np.zeros((rows, int(units or 0)), dtype=np.float32)
    return np.asarray(item.states[k], dtype=np.float32)


def split(signature: ModelSignature, result: RunResult, shapes: Sequence[tuple[int, int]]) -> list[RunResult]:
    """Each item's slice of a merged result: its rows, and its own timesteps of sequence outputs."""
    batch_axis, _ = _axes(signature)
    longest = max(t for _, t in shapes)
    outputs = list(result.outputs.items())
    states = result.states
    parts: list[RunResult] = []
    start = 0
    if len(outputs) == 1 and len(states) == 1 and outputs[0][1].ndim < 3:
        # the common case (one per-sequence output, one state): two slices a call
        (name, value), (state,) = outputs[0], states
        for rows, _ in shapes:
            stop = start + rows
            parts.append(RunResult({name: value[start:stop]}, [state[start:stop]]))
            start = stop
        return parts
    for rows, steps in shapes:
        stop = start + rows
        own: dict[str, np.ndarray] = {}
        for name, value in outputs:
            if value.ndim < 3:  # (batch, units): the last step's output
                own[name] = value[start:stop]
            elif batch_axis == 0:  # a sequence output, batch-major: its rows, then its own timesteps
                own[name] = value[start:stop] if steps == longest else value[start:stop, :steps]
            else:  # time-major
                own[name] = value[:steps, start:stop]
        parts.append(RunResult(outputs=own, states=[s[start:stop] for s in states]))
        start = stop
    return parts
