"""Merge the rows of several model calls into one, and split the result back. Pure numpy, no event loop.

Items may have different numbers of timesteps: shorter ones are padded at the end with masked steps, which
keep the state unchanged and carry the last output (Keras masking), so each item's outputs sliced back to its
own length and its final states are exactly what a call of its own gives. A model with a `go_backwards` layer
would read the padding first; callers group such items by length instead (`pad_ok=False`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.runtime.signature import Feeds, ModelSignature, RunResult


@dataclass(frozen=True)
class CallItem:
    """One model call: already validated inputs in the model's layout, its states and mask."""

    inputs: Feeds
    states: Sequence[np.ndarray] | None
    mask: np.ndarray | None


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


def merge(signature: ModelSignature, items: Sequence[CallItem]) -> tuple[CallItem, list[tuple[int, int]]]:
    """One call holding every item's rows, and each item's (rows, timesteps) to split the result with."""
    batch_axis, time_axis = _axes(signature)
    shapes = [item_shape(signature, item) for item in items]
    longest = max(t for _, t in shapes)
    inputs = {
        info.name: np.concatenate(
            [_pad_time(np.asarray(item.inputs[info.name]), time_axis, longest) for item in items], axis=batch_axis
        )
        for info in signature.inputs
    }
    masks = []
    for item, (rows, steps) in zip(items, shapes, strict=True):
        own = np.ones((rows, steps), dtype=bool) if item.mask is None else np.asarray(item.mask, dtype=bool)
        masks.append(_pad_time(own, 1, longest))  # padding is False: masked, state unchanged
    states: list[np.ndarray] | None = None
    if signature.states:
        states = [
            np.concatenate(
                [_item_state(item, k, rows, info.shape[1]) for item, (rows, _) in zip(items, shapes, strict=True)]
            )
            for k, info in enumerate(signature.states)
        ]
    return CallItem(inputs, states, np.concatenate(masks)), shapes


def _item_state(item: CallItem, k: int, rows: int, units: int | None) -> np.ndarray:
    if item.states is None:
        return np.zeros((rows, int(units or 0)), dtype=np.float32)
    return np.asarray(item.states[k], dtype=np.float32)


def split(signature: ModelSignature, result: RunResult, shapes: Sequence[tuple[int, int]]) -> list[RunResult]:
    """Each item's slice of a merged result: its rows, and its own timesteps of sequence outputs."""
    batch_axis, time_axis = _axes(signature)
    parts: list[RunResult] = []
    start = 0
    for rows, steps in shapes:
        rows_slice = slice(start, start + rows)
        outputs = {}
        for name, value in result.outputs.items():
            index: list[slice] = [slice(None)] * value.ndim
            if value.ndim >= 3:  # a sequence output, in the model's layout: cut its rows and its own timesteps
                index[batch_axis], index[time_axis] = rows_slice, slice(0, steps)
            else:  # (batch, units): the last step's output
                index[0] = rows_slice
            outputs[name] = value[tuple(index)]
        parts.append(RunResult(outputs=outputs, states=[s[rows_slice] for s in result.states]))
        start += rows
    return parts
