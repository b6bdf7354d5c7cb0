"""onnxruntime's fused RNN / GRU / LSTM ops for the steps where Keras masking has nothing to do.

The native ops cannot express Keras masking (a masked step keeps the state and repeats the previous output;
ONNX's `sequence_lens` only trims a tail), so they serve only where the result is provably the same:

* a whole sequence whose mask is all True, chosen at run time by an `If` in front of the `Scan`
  (`rnnserve.export.converters.recurrent`), because a fused op is several times faster than a `Scan` loop;
* nothing else: the unrolled chain keeps the hand-written cell (see bench/bench_graphs.py for the figures).

Weights are re-laid out as ONNX wants them: `W [1, gU, F]`, `R [1, gU, U]`, `B [1, 2gU]` (input then recurrent
bias), gates GRU z, r, h (as Keras) and LSTM i, o, f, c (Keras i, f, c, o). Keras `reset_after=True` is ONNX
`linear_before_reset=1`. Activations are limited to those onnxruntime implements exactly as Keras does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnserve.export.builder import GraphBuilder

# Canonical Keras activation -> onnxruntime RNN activation (parameterless, same definition as Keras).
ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softsign": "Softsign", "softplus": "Softplus"}


@dataclass(frozen=True)
class NativeForm:
    """How a Keras recurrent kind maps onto onnxruntime's fused op (each recurrent kind module declares one)."""

    op_type: str  # the ONNX op
    gate_order: tuple[int, ...]  # Keras block k at ONNX position i
    activation_keys: tuple[str, ...]  # ONNX f (gates), g (candidate), h (LSTM cell output) from Keras config keys
    state_count: int
    max_batch: int | None  # the batch sizes up to which the fused op wins (bench/bench_graphs.py)
    reset_after_attribute: bool = False  # Keras `reset_after` is ONNX `linear_before_reset`


@dataclass(frozen=True)
class NativeCell:
    """One direction of a fused ONNX recurrent op: its weights (initializers) and attributes."""

    op_type: str
    units: int
    weights: tuple[str, str, str | None]  # W, R, B
    attributes: Mapping[str, Any]
    state_count: int
    max_batch: int | None


def _activations(form: NativeForm, config: Mapping[str, Any]) -> list[str] | None:
    names = [ACTIVATIONS.get(str(config[key])) for key in form.activation_keys]
    return None if None in names else [n for n in names if n is not None]


def native_cell(
    g: GraphBuilder, form: NativeForm, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str
) -> NativeCell | None:
    """The fused op of a Keras recurrent layer, or None when its activations have no exact native form."""
    activations = _activations(form, config)
    if activations is None:
        return None
    units = int(config["units"])
    order = form.gate_order

    def onnx_layout(array: np.ndarray) -> np.ndarray:
        return np.concatenate([array[..., k * units : (k + 1) * units] for k in order], axis=-1)

    w = onnx_layout(np.asarray(weights["kernel"])).T[None]
    r = onnx_layout(np.asarray(weights["recurrent_kernel"])).T[None]
    b = None
    if "bias" in weights:
        bias = np.asarray(weights["bias"])
        input_bias, recurrent_bias = (bias[0], bias[1]) if bias.ndim == 2 else (bias, np.zeros_like(bias))
        b = g.initializer(np.concatenate([onnx_layout(input_bias), onnx_layout(recurrent_bias)])[None], f"{name}/B")
    attributes: dict[str, Any] = {"hidden_size": units, "activations": activations}
    if form.reset_after_attribute:
        attributes["linear_before_reset"] = int(bool(config.get("reset_after", True)))
    return NativeCell(
        form.op_type,
        units,
        (g.initializer(w, f"{name}/W"), g.initializer(r, f"{name}/R"), b),
        attributes,
        form.state_count,
        form.max_batch,
    )


def run_native(
    g: GraphBuilder, cell: NativeCell, x_tbf: str, initial: Sequence[str], *, reverse: bool
) -> tuple[str, tuple[str, ...]]:
    """Run the fused op over time-major `x_tbf`; returns (outputs `(T, B, U)`, final states `(B, U)` each).

    With `reverse` the op reads from the last step and, as ONNX defines it, writes each output at the time
    index of the input it read (input order, not processing order).
    """
    axis0 = g.ints([0])
    w, r, b = cell.weights
    inputs = [x_tbf, w, r, b or "", "", *(g.op("Unsqueeze", s, axis0) for s in initial)]
    direction = "reverse" if reverse else "forward"
    outputs = g.node(cell.op_type, inputs, 1 + cell.state_count, hint="native", direction=direction,
                     **cell.attributes)  # fmt: skip
    sequence = g.op("Squeeze", outputs[0], g.ints([1]))
    return sequence, tuple(g.op("Squeeze", s, axis0) for s in outputs[1:])
