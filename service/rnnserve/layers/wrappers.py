"""Bidirectional and TimeDistributed at inference (SEMANTICS.md §3-4)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnserve.errors import InvalidInput, ModelFileError, UnsupportedLayer
from rnnserve.kinds import find_kind, registered_kinds
from rnnserve.kinds.recurrent import LoopKind
from rnnserve.layers.cells import States
from rnnserve.layers.recurrent import RecurrentLayer

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _merge(mode: str | None, y: np.ndarray, y_rev: np.ndarray) -> list[np.ndarray]:
    if mode == "concat":
        return [np.concatenate([y, y_rev], axis=-1)]
    if mode == "sum":
        return [y + y_rev]
    if mode == "mul":
        return [y * y_rev]
    if mode == "ave":
        return [(y + y_rev) / 2.0]
    return [y, y_rev]


def _prefixed(weights: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def _inner(config: Mapping[str, Any], key: str, name: str) -> tuple[str, dict[str, Any]]:
    inner = config.get(key)
    if not isinstance(inner, Mapping) or "class_name" not in inner or "config" not in inner:
        raise ModelFileError(f"layer {name!r}: {key!r} must be a serialized layer (class_name, config), got {inner!r}")
    return str(inner["class_name"]), dict(inner["config"])


@dataclass(frozen=True)
class Bidirectional:
    """A forward and a backward recurrent layer over the same input, merged.

    As in Keras: the backward layer is the wrapped layer with `go_backwards` flipped (or `backward_layer` when
    the config has one); both get `zero_output_for_mask = return_sequences`; with `return_sequences` the backward
    output is flipped back into input time order before merging. `merge_mode=None` gives two outputs.
    """

    forward: RecurrentLayer
    backward: RecurrentLayer
    merge_mode: str | None = "concat"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> Bidirectional:
        merge_mode = config.get("merge_mode", "concat")
        if merge_mode not in MERGE_MODES:
            raise ModelFileError(f"layer {name!r}: merge_mode={merge_mode!r} is not one of {MERGE_MODES}")
        class_name, forward_config = _inner(config, "layer", name)
        forward_kind = _loop_kind(class_name, name)
        if config.get("backward_layer") is not None:
            backward_class, backward_config = _inner(config, "backward_layer", name)
        else:
            backward_class = class_name
            flipped = not forward_config.get("go_backwards", False)
            backward_config = forward_kind.loop_config(forward_config, go_backwards=flipped)
        backward_kind = _loop_kind(backward_class, name)
        return cls(
            _sublayer(forward_kind, forward_config, _prefixed(weights, "forward/"), f"{name}/forward"),
            _sublayer(backward_kind, backward_config, _prefixed(weights, "backward/"), f"{name}/backward"),
            merge_mode,
        )

    @property
    def return_sequences(self) -> bool:
        return self.forward.return_sequences

    @property
    def return_state(self) -> bool:
        return self.forward.return_state

    @property
    def state_count(self) -> int:
        return self.forward.state_count + self.backward.state_count

    def __call__(
        self,
        x: np.ndarray,
        mask: np.ndarray | None = None,
        initial_states: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[list[np.ndarray], States]:
        """`(outputs, final_states)`: outputs is `[merged]`, or `[forward, backward]` when `merge_mode` is None;
        states are the forward states then the backward ones."""
        half = self.forward.state_count
        forward_init = None if initial_states is None else initial_states[:half]
        backward_init = None if initial_states is None else initial_states[half:]
        y, forward_states = self.forward(x, mask, forward_init)
        y_rev, backward_states = self.backward(x, mask, backward_init)
        if self.return_sequences:
            y_rev = np.flip(y_rev, axis=0 if self.backward.time_major else 1)
        return _merge(self.merge_mode, y, y_rev), forward_states + backward_states


def _loop_kind(class_name: str, name: str) -> LoopKind:
    kind = find_kind(class_name)
    if not isinstance(kind, LoopKind):
        raise UnsupportedLayer(f"layer {name!r}: Bidirectional around {class_name!r} is not supported")
    return kind


def _sublayer(
    kind: LoopKind, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str
) -> RecurrentLayer:
    """A Bidirectional half, the wrapped kind's own reference: Keras forces `zero_output_for_mask =
    return_sequences` on both."""
    forced = kind.loop_config(config, zero_output_for_mask=bool(config.get("return_sequences", False)))
    return kind.recurrent_layer(forced, weights, name)


@dataclass(frozen=True)
class TimeDistributed:
    """Applies a per-timestep layer (a `per_step` kind: Dense, Dropout) to every step of a `(batch, time, ...)`
    input."""

    layer: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> TimeDistributed:
        class_name, inner_config = _inner(config, "layer", name)
        kind = find_kind(class_name)
        if kind is None or not kind.per_step:
            per_step = sorted(n for n, k in registered_kinds().items() if k.per_step)
            raise UnsupportedLayer(
                f"layer {name!r}: TimeDistributed around {class_name!r} is not supported (only {per_step})"
            )
        return cls(kind.step_reference(inner_config, weights, name))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 3:
            raise InvalidInput(f"TimeDistributed needs an input with a time axis, got shape {x.shape}")
        batch, steps = x.shape[:2]
        y = self.layer(x.reshape(batch * steps, *x.shape[2:]))
        return y.reshape(batch, steps, *y.shape[1:])
