"""GRU, gates in Keras order z, r, h (SEMANTICS §1).

reset_after=True:  `xp = x K + b[0]`, `hp = h R + b[1]`, `hh = act(xp_h + r * hp_h)` (the reset gate scales the
recurrent projection including its bias). reset_after=False: `xp = x K + b`, `hh = act(xp_h + (r * h) R_h)`.
Both: `h_new = z * h + (1 - z) * hh`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnserve.export.activations import emit_activation
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.converters.native import NativeForm, native_cell
from rnnserve.export.converters.recurrent import Cell, StepFn, activate_gates, cell_activation
from rnnserve.kinds.base import register_kind
from rnnserve.kinds.recurrent import RNN_DEFAULTS, RecurrentKind
from rnnserve.layers.cells import GRUCell

NATIVE = NativeForm(
    "GRU", (0, 1, 2), ("recurrent_activation", "activation"), state_count=1, max_batch=None, reset_after_attribute=True
)


def update(b: GraphBuilder, z: str, h: str, candidate: str) -> str:
    """`z * h + (1 - z) * hh`, as Keras writes it."""
    keep = b.op("Mul", z, h)
    return b.op("Add", keep, b.op("Mul", b.op("Sub", b.scalar(1.0), z), candidate), hint="h")


def reset_after_state(
    b: GraphBuilder, xp_t: str, hp: str, h: str, split: str, activation: str, gate_activation: str
) -> str:
    """The new state of a reset_after step from the timestep's input projection `xp_t` and the recurrent one `hp`
    (its bias included): the plain step and the Monte-Carlo dropout graph's (`rnnserve.export.dropout`) differ only
    in how they project."""
    x_zr, x_h = b.node("Split", [xp_t, split], 2, axis=-1)
    h_zr, h_h = b.node("Split", [hp, split], 2, axis=-1)
    z, r = activate_gates(b, gate_activation, b.op("Add", x_zr, h_zr), 2)
    candidate = emit_activation(b, activation, b.op("Add", x_h, b.op("Mul", r, h_h)))
    return update(b, z, h, candidate)


def _step_reset_after(
    g: GraphBuilder, name: str, units: int, activation: str, gate_activation: str, weights: Mapping[str, np.ndarray]
) -> StepFn:
    recurrent = g.initializer(weights["recurrent_kernel"], f"{name}/recurrent_kernel")
    recurrent_bias = g.initializer(weights["bias"][1], f"{name}/recurrent_bias") if "bias" in weights else None
    split = g.ints([2 * units, units])

    def step(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        h = states[0]
        hp = b.op("MatMul", h, recurrent)
        if recurrent_bias is not None:
            hp = b.op("Add", hp, recurrent_bias)
        h_new = reset_after_state(b, xp_t, hp, h, split, activation, gate_activation)
        return h_new, (h_new,)

    return step


def _step_reset_before(
    g: GraphBuilder, name: str, units: int, activation: str, gate_activation: str, weights: Mapping[str, np.ndarray]
) -> StepFn:
    kernel = np.asarray(weights["recurrent_kernel"])
    recurrent_zr = g.initializer(kernel[:, : 2 * units], f"{name}/recurrent_kernel_zr")
    recurrent_h = g.initializer(kernel[:, 2 * units :], f"{name}/recurrent_kernel_h")
    split = g.ints([2 * units, units])

    def step(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        h = states[0]
        x_zr, x_h = b.node("Split", [xp_t, split], 2, axis=-1)
        z, r = activate_gates(b, gate_activation, b.op("Add", x_zr, b.op("MatMul", h, recurrent_zr)), 2)
        candidate = emit_activation(b, activation, b.op("Add", x_h, b.op("MatMul", b.op("Mul", r, h), recurrent_h)))
        h_new = update(b, z, h, candidate)
        return h_new, (h_new,)

    return step


def build_cell(
    g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
) -> Cell:
    """The GRU cell; with `native`, also its fused ONNX op for unmasked passes."""
    units = int(config["units"])
    activation = cell_activation(config, "activation", name)
    gate_activation = cell_activation(config, "recurrent_activation", name)
    reset_after = bool(config.get("reset_after", True))
    make_step = _step_reset_after if reset_after else _step_reset_before
    step = make_step(g, name, units, activation, gate_activation, weights)
    bias = None
    if "bias" in weights:
        input_bias = weights["bias"][0] if reset_after else weights["bias"]
        bias = g.initializer(input_bias, f"{name}/bias")
    fused = native_cell(g, NATIVE, config, weights, name) if native else None
    return Cell(units, g.initializer(weights["kernel"], f"{name}/kernel"), bias, step, fused)


class GRU(RecurrentKind):
    class_name = "GRU"
    defaults = {**RNN_DEFAULTS, "recurrent_activation": "sigmoid", "reset_after": True}
    dropped = frozenset({"implementation"})
    activation_keys = ("activation", "recurrent_activation")
    gates = 3
    native = NATIVE

    def split_bias(self, config: Mapping[str, Any]) -> bool:
        return bool(config.get("reset_after", True))

    def make_cell(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> GRUCell:
        return GRUCell.from_config(config, weights, name)

    def build_cell(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell:
        return build_cell(g, config, weights, name, native=native)


register_kind(GRU())
