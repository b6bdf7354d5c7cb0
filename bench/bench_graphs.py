"""Per-call latency of the exported graph forms: Scan, unrolled, and onnxruntime's native RNN/GRU/LSTM op.

    .venv/bin/python bench/bench_graphs.py                     # units 128, features 32, T in {1, 100}, B in {1, 64}
    .venv/bin/python bench/bench_graphs.py --cells GRU --steps 1,8 --batches 1,8 --rounds 9

Every form is built from the same spec (one recurrent layer, return_sequences=True) and checked against the
Scan graph before it is timed. The native ops cannot express Keras masking (a masked step keeps the state and
repeats the output; ONNX's `sequence_lens` only trims a tail), so they are measured on unmasked input only, as
the bound of what a mask-free fast path could gain. onnxruntime runs with one intra-op and one inter-op thread.

Forms are timed in interleaved rounds (the order shuffled each round, a fixed number of calls per form per
round) so that a noisy, shared machine slows every form alike; the table shows the median per-call time over
rounds and the ratio to Scan (< 1 is faster than Scan).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnserve.export.builder import IR_VERSION, OPSET  # noqa: E402
from rnnserve.export.convert import to_onnx  # noqa: E402
from rnnserve.runtime.ort_model import RuntimeOptions, new_session, resolve_providers  # noqa: E402
from rnnserve.runtime.runner import MASK_INPUT, STATE_OUT_SUFFIX  # noqa: E402
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef, rnn_state_names  # noqa: E402

GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}
NATIVE_OPS = {"SimpleRNN": "RNN", "GRU": "GRU", "LSTM": "LSTM"}
Feeds = dict[str, np.ndarray]


def make_spec(cell: str, units: int, features: int, rng: np.random.Generator) -> ModelSpec:
    width = GATES[cell] * units
    config = {
        "units": units, "activation": "tanh", "use_bias": True, "return_sequences": True, "return_state": False,
        "go_backwards": False, "stateful": False, "unroll": False, "zero_output_for_mask": False,
        "time_major": False, "recurrent_activation": "sigmoid", "reset_after": True,
    }  # fmt: skip
    weights = {
        "kernel": rng.normal(0, 1 / np.sqrt(features), (features, width)).astype(np.float32),
        "recurrent_kernel": rng.normal(0, 1 / np.sqrt(units), (units, width)).astype(np.float32),
        "bias": rng.normal(0, 0.1, (2, width) if cell == "GRU" else (width,)).astype(np.float32),
    }
    layer = LayerSpec(cell, "rnn", config, weights, (TensorRef("x"),))
    return ModelSpec("bench", (InputSpec("x", (None, None, features)),), (layer,), (TensorRef("rnn"),), ("y",))


# ---- onnxruntime's native recurrent ops ----------------------------------------------------------------------


def _gate_blocks(array: np.ndarray, units: int, order: Sequence[int]) -> np.ndarray:
    return np.concatenate([array[..., k * units : (k + 1) * units] for k in order], axis=-1)


def native_weights(cell: str, weights: Mapping[str, np.ndarray], units: int) -> tuple[np.ndarray, ...]:
    """ONNX W [1, gU, F], R [1, gU, U], B [1, 2gU] from Keras weights.

    GRU: both use z, r, h (reset_after = linear_before_reset=1, with separate input/recurrent biases).
    LSTM: Keras i, f, c, o -> ONNX i, o, f, c.
    """
    order = (0, 3, 1, 2) if cell == "LSTM" else tuple(range(GATES[cell]))
    kernel = _gate_blocks(weights["kernel"], units, order)
    recurrent = _gate_blocks(weights["recurrent_kernel"], units, order)
    bias = weights["bias"]
    if cell == "GRU":
        w_bias, r_bias = _gate_blocks(bias[0], units, order), _gate_blocks(bias[1], units, order)
    else:
        w_bias, r_bias = _gate_blocks(bias, units, order), np.zeros(GATES[cell] * units, np.float32)
    return kernel.T[None], recurrent.T[None], np.concatenate([w_bias, r_bias])[None]


def native_graph(spec: ModelSpec) -> onnx.ModelProto:
    """The same layer as one native op; inputs x + states (no mask), outputs y + states, names as to_onnx."""
    layer = spec.layers[0]
    cell, units = layer.class_name, int(layer.config["units"])
    w, r, b = native_weights(cell, layer.weights, units)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in ((w, "W"), (r, "R"), (b, "B"))]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    states = [f"rnn/{s}" for s in rnn_state_names(cell)]
    nodes = [helper.make_node("Transpose", ["x"], ["x_tbf"], perm=[1, 0, 2])]
    op_inputs = ["x_tbf", "W", "R", "B", ""]
    for s in states:
        nodes.append(helper.make_node("Unsqueeze", [s, "axis0"], [f"{s}_3d"]))
        op_inputs.append(f"{s}_3d")
    outs = ["y_t1bu", *(f"{s}_final3d" for s in states)]
    attrs: dict[str, Any] = {"linear_before_reset": 1} if cell == "GRU" else {}
    nodes.append(helper.make_node(NATIVE_OPS[cell], op_inputs, outs, hidden_size=units, **attrs))
    nodes.append(helper.make_node("Squeeze", ["y_t1bu", "axis1"], ["y_tbu"]))
    nodes.append(helper.make_node("Transpose", ["y_tbu"], ["y"], perm=[1, 0, 2]))
    nodes.extend(helper.make_node("Squeeze", [f"{s}_final3d", "axis0"], [s + STATE_OUT_SUFFIX]) for s in states)
    features = int(spec.inputs[0].shape[-1] or 0)
    graph = helper.make_graph(
        nodes, "native",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", features])]
        + [helper.make_tensor_value_info(s, TensorProto.FLOAT, ["batch", units]) for s in states],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", units])]
        + [helper.make_tensor_value_info(s + STATE_OUT_SUFFIX, TensorProto.FLOAT, ["batch", units]) for s in states],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# ---- timing ------------------------------------------------------------------------------------------------------


def make_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """On the CPU, as the server runs its graphs by default (one intra-op and one inter-op thread)."""
    return new_session(model.SerializeToString(), RuntimeOptions(), resolve_providers("cpu"))


def runner(session: ort.InferenceSession, feeds: Feeds) -> Callable[[], list[np.ndarray]]:
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    bound = {k: v for k, v in feeds.items() if k in wanted}
    return lambda: session.run(names, bound)  # type: ignore[no-any-return]


def per_call_seconds(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def build_forms(spec: ModelSpec, steps: int) -> dict[str, onnx.ModelProto]:
    return {
        "loop": to_onnx(spec, unroll=False)[0],
        "dispatch": to_onnx(spec, unroll=False)[0],
        "unrolled": to_onnx(spec, unroll=True, time_steps=steps)[0],
        "native": native_graph(spec),
    }


FORMS = ("loop", "dispatch", "unrolled", "native")


def case_feeds(spec: ModelSpec, steps: int, batch: int, rng: np.random.Generator) -> dict[str, Feeds]:
    """Per form, its feeds: `loop` gets a mask whose first step is False, which sends the exported graph down
    its Scan branch (a masked step costs what an unmasked one does); the others get an all-True mask."""
    units = int(spec.layers[0].config["units"])
    feeds: Feeds = {
        "x": rng.normal(0, 1, (batch, steps, int(spec.inputs[0].shape[-1] or 0))).astype(np.float32),
        MASK_INPUT: np.ones((batch, steps), bool),
    }
    for s in rnn_state_names(spec.layers[0].class_name):
        feeds[f"rnn/{s}"] = rng.normal(0, 0.5, (batch, units)).astype(np.float32)
    holey = dict(feeds, **{MASK_INPUT: np.concatenate([np.zeros((batch, 1), bool), feeds[MASK_INPUT][:, 1:]], 1)})
    return {"loop": holey, "dispatch": feeds, "unrolled": feeds, "native": feeds}


def check_agreement(calls: Mapping[str, Callable[[], list[np.ndarray]]], spec: ModelSpec, steps: int) -> None:
    """Every form computes the same numbers (the loop checked against the unrolled chain on its own mask)."""
    unmasked = calls["unrolled"]()
    for name in ("dispatch", "native"):
        for got, want in zip(calls[name](), unmasked, strict=True):
            if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"{name} differs from the unrolled chain by {np.abs(got - want).max():.3g}")


def bench_case(
    spec: ModelSpec, steps: int, batch: int, rounds: int, budget_s: float, rng: np.random.Generator
) -> dict[str, float]:
    """Median per-call seconds of each form; raises if the forms disagree."""
    models = build_forms(spec, steps)
    feeds = case_feeds(spec, steps, batch, rng)
    calls = {name: runner(make_session(models[name]), feeds[name]) for name in FORMS}
    check_agreement(calls, spec, steps)
    per_round = max(3, int(budget_s / max(per_call_seconds(calls["loop"], 3), 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            samples[name].append(per_call_seconds(calls[name], per_round))
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="SimpleRNN,GRU,LSTM")
    parser.add_argument("--steps", default="1,100", help="comma-separated T values")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget", type=float, default=0.03, help="seconds of calls per form per round")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    random.seed(0)
    header = f"{'cell':9} {'T':>4} {'B':>3} | " + " ".join(f"{name + ' ms':>11}" for name in FORMS)
    print(header + " | " + " ".join(f"{name + '/loop':>13}" for name in FORMS[1:]))
    print("-" * (len(header) + 3 + 14 * (len(FORMS) - 1)))
    for cell in args.cells.split(","):
        spec = make_spec(cell, args.units, args.features, rng)
        for steps in (int(s) for s in args.steps.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                t = bench_case(spec, steps, batch, args.rounds, args.budget, rng)
                times = " ".join(f"{t[name] * 1e3:11.4f}" for name in FORMS)
                ratios = " ".join(f"{t[name] / t['loop']:13.2f}" for name in FORMS[1:])
                print(f"{cell:9} {steps:>4} {batch:>3} | {times} | {ratios}", flush=True)


if __name__ == "__main__":
    main()
