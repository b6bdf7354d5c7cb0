"""What converters receive and return: graph values with their Keras metadata (shape, implicit mask, layout)."""

from __future__ import annotations

from dataclasses import dataclass

from onnx import TensorProto

from rnnserve.spec import LayerSpec

Shape = tuple[int | None, ...]  # static sizes; None = free (batch, time, or unknown)


@dataclass(frozen=True)
class Value:
    """One tensor of the graph being built.

    `mask` is the name of the bool `(batch, time)` mask travelling with a *sequence* (Keras's implicit mask);
    every sequence has one (at least the graph's `mask` input) and a non-sequence has none. `time_major` says the
    tensor is laid out `(time, batch, ...)` (Keras 2 `time_major=True`); masks are always `(batch, time)`.
    """

    name: str
    shape: Shape
    elem_type: int = TensorProto.FLOAT
    mask: str | None = None
    time_major: bool = False

    @property
    def is_sequence(self) -> bool:
        return self.mask is not None

    @property
    def time_axis(self) -> int:
        return 0 if self.time_major else 1

    @property
    def time_steps(self) -> int | None:
        """The static number of timesteps of a sequence, else None."""
        return self.shape[self.time_axis] if self.is_sequence and len(self.shape) > 1 else None


@dataclass(frozen=True)
class LayerCall:
    """One layer application to convert.

    `initial_state` holds one value name per state of the layer (`rnnserve.spec.layer_states` order). `unroll`
    overrides the recurrent layers' own `unroll` setting when not None (an unrolled layer takes its T from the
    static time dimension of its input).
    """

    layer: LayerSpec
    inputs: tuple[Value, ...]
    initial_state: tuple[str, ...] = ()
    unroll: bool | None = None


@dataclass(frozen=True)
class LayerResult:
    """The layer's outputs (Keras order) and, for recurrent layers, the final value of each of its states."""

    outputs: tuple[Value, ...]
    final_states: tuple[str, ...] = ()
