"""The recurrent loop: direction, masking and state carry around a cell (SEMANTICS.md §3-4).

At a masked step the cell still runs, but its new state is discarded (the previous one is kept), and its
output is replaced by the previous step's output (zeros before the first unmasked step), or by zeros when
`zero_output_for_mask`. With `go_backwards` the input and its mask are read from the last step to the first
and the output sequence stays in that processing order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnserve.errors import InvalidInput
from rnnserve.layers.cells import Cell, GRUCell, LSTMCell, SimpleRNNCell, StackedCells, States, make_cell


def run_recurrent(
    cell: Cell,
    x: np.ndarray,
    mask: np.ndarray | None = None,
    initial_states: Sequence[np.ndarray | None] | None = None,
    *,
    go_backwards: bool = False,
    return_sequences: bool = False,
    zero_output_for_mask: bool = False,
    time_major: bool = False,
) -> tuple[np.ndarray, States]:
    """Run `cell` over a sequence, in float64.

    Args:
        cell: one timestep (`rnnserve.layers.cells`).
        x: `(batch, time, features)`, or `(time, batch, features)` when `time_major`.
        mask: optional bool `(batch, time)` (`(time, batch)` when `time_major`); False skips a step.
        initial_states: `cell.state_count` arrays `(batch, units)`; zeros when None (or for a None entry).
        go_backwards: read time from last to first; the output sequence is not flipped back.
        return_sequences: return every step's output instead of the last one.
        zero_output_for_mask: masked steps output zeros instead of the carried previous output.
        time_major: `x` and the sequence output have time first.

    Returns:
        `(y, final_states)`: y is `(batch, units)`, or `(batch, time, units)` (`(time, batch, units)` when
        `time_major`) with `return_sequences`; final_states are the states after the last unmasked step.
    """
    seq = np.asarray(x, dtype=np.float64)
    if time_major:
        seq = np.swapaxes(seq, 0, 1)
        mask = None if mask is None else np.swapaxes(np.asarray(mask), 0, 1)
    batch, steps = seq.shape[0], seq.shape[1]
    if steps == 0:
        raise InvalidInput("a recurrent layer needs at least one timestep, got an input with time length 0")
    keep = _check_mask(mask, batch, steps)
    states = _initial_states(cell, initial_states, batch)
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    output = np.zeros((batch, cell.units))
    outputs = []
    for t in order:
        y_t, new_states = cell.step(seq[:, t], states)
        if keep is None:
            output, states = y_t, new_states
        else:
            m = keep[:, t, None]
            output = np.where(m, y_t, 0.0 if zero_output_for_mask else output)
            states = [np.where(m, new, old) for new, old in zip(new_states, states, strict=True)]
        outputs.append(output)
    if not return_sequences:
        return output, states
    y = np.stack(outputs, axis=0 if time_major else 1)
    return y, states


def _check_mask(mask: np.ndarray | None, batch: int, steps: int) -> np.ndarray | None:
    if mask is None:
        return None
    keep = np.asarray(mask)
    if keep.shape != (batch, steps):
        raise InvalidInput(f"mask has shape {keep.shape}, expected (batch, time) = {(batch, steps)}")
    return keep.astype(bool)


def _initial_states(cell: Cell, given: Sequence[np.ndarray | None] | None, batch: int) -> States:
    """The given states as float64, zeros for a missing list or a None entry; shapes checked."""
    if given is None:
        given = [None] * cell.state_count
    if len(given) != cell.state_count:
        raise InvalidInput(f"expected {cell.state_count} initial state(s), got {len(given)}")
    widths = getattr(cell, "state_units", None) or (cell.units,) * cell.state_count  # stacked cells differ
    states = [
        np.zeros((batch, w)) if s is None else np.asarray(s, dtype=np.float64)
        for s, w in zip(given, widths, strict=True)
    ]
    for s, w in zip(states, widths, strict=True):
        if s.shape != (batch, w):
            raise InvalidInput(f"initial state has shape {s.shape}, expected (batch, units) = {(batch, w)}")
    return states


@dataclass(frozen=True)
class RecurrentLayer:
    """A SimpleRNN, GRU or LSTM layer (or an RNN of stacked cells) at inference: a cell plus the loop options of
    its config.

    `stateful`, `unroll`, `dropout` and `recurrent_dropout` do not change inference results and are ignored.
    """

    cell: SimpleRNNCell | GRUCell | LSTMCell | StackedCells
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    zero_output_for_mask: bool = False
    time_major: bool = False

    @classmethod
    def from_config(
        cls, class_name: str, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> RecurrentLayer:
        return cls(
            cell=make_cell(class_name, config, weights, name),
            return_sequences=bool(config.get("return_sequences", False)),
            return_state=bool(config.get("return_state", False)),
            go_backwards=bool(config.get("go_backwards", False)),
            zero_output_for_mask=bool(config.get("zero_output_for_mask", False)),
            time_major=bool(config.get("time_major", False)),
        )

    @property
    def state_count(self) -> int:
        return self.cell.state_count

    def __call__(
        self,
        x: np.ndarray,
        mask: np.ndarray | None = None,
        initial_states: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, States]:
        """`(y, final_states)`; `mask` is in the layout of `x` (time first when `time_major`)."""
        return run_recurrent(
            self.cell,
            x,
            mask,
            initial_states,
            go_backwards=self.go_backwards,
            return_sequences=self.return_sequences,
            zero_output_for_mask=self.zero_output_for_mask,
            time_major=self.time_major,
        )
