"""Small hand-made specs for the exporter tests, and the helpers that run a graph next to the reference."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from graph_provider import session_providers

from rnnserve.export.convert import to_onnx
from rnnserve.importers.keras_layers import normalise_layer
from rnnserve.layers.model import ReferenceModel
from rnnserve.runtime.runner import MASK_INPUT, STATE_OUT_SUFFIX, RunResult
from rnnserve.signature import ModelSignature
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef, rnn_state_names

GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}
LOOP_OPS = frozenset({"Scan", "Loop"})
CELLS = [
    ("SimpleRNN", {}),
    ("GRU", {"reset_after": True}),
    ("GRU", {"reset_after": False}),
    ("LSTM", {}),
]
"""Every recurrent cell form the exporter builds a step for, as (class_name, extra config) with `CELL_IDS`."""
CELL_IDS = ["simple_rnn", "gru_reset_after", "gru_reset_before", "lstm"]


def rnn_config(class_name: str, units: int, **overrides: Any) -> dict[str, Any]:
    """The importers' normalised defaults (every key present), then `overrides` as given, unchecked, so tests can
    also build the configs that the reference and the exporter must refuse."""
    name = overrides.pop("name", class_name.lower())
    return {**normalise_layer(class_name, {"units": units}, name, "3"), **overrides}


def rnn_weights(
    class_name: str, features: int, config: Mapping[str, Any], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    units = int(config["units"])
    width = GATES[class_name] * units
    weights = {
        "kernel": rng.normal(0.0, 0.6, (features, width)).astype(np.float32),
        "recurrent_kernel": rng.normal(0.0, 0.6, (units, width)).astype(np.float32),
    }
    if config["use_bias"]:
        shape = (2, width) if class_name == "GRU" and config["reset_after"] else (width,)
        weights["bias"] = rng.normal(0.0, 0.3, shape).astype(np.float32)
    return weights


def rnn_layer(
    class_name: str,
    name: str,
    source: str,
    features: int,
    units: int,
    rng: np.random.Generator,
    initial_state: tuple[TensorRef, ...] = (),
    **overrides: Any,
) -> LayerSpec:
    config = rnn_config(class_name, units, name=name, **overrides)
    return LayerSpec(
        class_name, name, config, rnn_weights(class_name, features, config, rng), (TensorRef(source),), initial_state
    )


def bidirectional_layer(
    class_name: str,
    name: str,
    source: str,
    features: int,
    units: int,
    rng: np.random.Generator,
    merge_mode: str | None = "concat",
    **overrides: Any,
) -> LayerSpec:
    inner = rnn_config(class_name, units, name=f"forward_{name}", **overrides)
    weights = {
        f"{d}/{k}": v for d in ("forward", "backward") for k, v in rnn_weights(class_name, features, inner, rng).items()
    }
    config = {"name": name, "merge_mode": merge_mode, "layer": {"class_name": class_name, "config": inner}}
    return LayerSpec("Bidirectional", name, config, weights, (TensorRef(source),))


def dense_layer(
    name: str,
    source: str,
    features: int,
    units: int,
    rng: np.random.Generator,
    activation: str = "linear",
    use_bias: bool = True,
) -> LayerSpec:
    config = {"name": name, "units": units, "activation": activation, "use_bias": use_bias}
    weights = {"kernel": rng.normal(0.0, 0.6, (features, units)).astype(np.float32)}
    if use_bias:
        weights["bias"] = rng.normal(0.0, 0.3, (units,)).astype(np.float32)
    return LayerSpec("Dense", name, config, weights, (TensorRef(source),))


def model(
    inputs: Sequence[InputSpec], layers: Sequence[LayerSpec], outputs: Mapping[str, TensorRef], keras_version: str = "3"
) -> ModelSpec:
    return ModelSpec(
        "m", tuple(inputs), tuple(layers), tuple(outputs.values()), tuple(outputs), keras_version=keras_version
    )


def one_layer(layer: LayerSpec, features: int, time_steps: int | None = None) -> ModelSpec:
    """A model `x -> layer` with outputs named y, y1, y2, ... for each output of the layer."""
    count = _output_count(layer)
    outputs = {("y" if k == 0 else f"y{k}"): TensorRef(layer.name, k) for k in range(count)}
    return model([InputSpec("x", (None, time_steps, features))], [layer], outputs)


def _output_count(layer: LayerSpec) -> int:
    bidirectional = layer.class_name == "Bidirectional"
    config = layer.config["layer"]["config"] if bidirectional else layer.config
    inner_class = layer.config["layer"]["class_name"] if bidirectional else layer.class_name
    ys = 2 if bidirectional and layer.config.get("merge_mode", "concat") is None else 1
    if not config.get("return_state"):
        return ys
    return ys + len(rnn_state_names(inner_class)) * (2 if bidirectional else 1)


# ---- running ----------------------------------------------------------------------------------------------------


def session(model_proto: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_proto.SerializeToString(), options, providers=session_providers())


def run_graph(
    model_proto: onnx.ModelProto,
    signature: ModelSignature,
    inputs: Mapping[str, np.ndarray],
    states: Sequence[np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> RunResult:
    """Run an exported graph with onnxruntime, feeding names as `rnnserve.runtime.runner` defines them."""
    first = np.asarray(inputs[signature.inputs[0].name])
    batch, steps = (first.shape[1], first.shape[0]) if signature.time_major else first.shape[:2]
    feeds: dict[str, np.ndarray] = {name: np.asarray(v) for name, v in inputs.items()}
    feeds[MASK_INPUT] = np.ones((batch, steps), bool) if mask is None else np.asarray(mask, bool)
    if states is None:
        states = [np.zeros((batch, int(s.shape[1] or 0)), np.float32) for s in signature.states]
    feeds.update({s.name: np.asarray(v, np.float32) for s, v in zip(signature.states, states, strict=True)})
    sess = session(model_proto)
    wanted = {i.name for i in sess.get_inputs()}
    names = [o.name for o in signature.outputs] + [s.name + STATE_OUT_SUFFIX for s in signature.states]
    values = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
    n = len(signature.outputs)
    return RunResult(dict(zip(names[:n], values[:n], strict=True)), list(values[n:]))


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """|actual - expected| <= 1e-5 + 1e-5 |expected| everywhere, shapes equal."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    excess = np.abs(actual - expected) - (1e-5 + 1e-5 * np.abs(expected))
    assert excess.max(initial=-1.0) <= 0, f"{what}: off by {np.abs(actual - expected).max():.3g}"


def assert_results_close(actual: RunResult, expected: RunResult) -> None:
    assert list(actual.outputs) == list(expected.outputs)
    for name in expected.outputs:
        assert_close(actual.outputs[name], expected.outputs[name], name)
    assert len(actual.states) == len(expected.states)
    for k, (a, e) in enumerate(zip(actual.states, expected.states, strict=True)):
        assert_close(a, e, f"state {k}")


def check_against_reference(
    spec: ModelSpec,
    inputs: Mapping[str, np.ndarray],
    *,
    mask: np.ndarray | None = None,
    states: Sequence[np.ndarray] | None = None,
    unroll: bool | None = None,
    time_steps: int | None = None,
) -> tuple[onnx.ModelProto, RunResult]:
    """Export, run with onnxruntime, and compare with `ReferenceModel` on the same feeds."""
    proto, signature = to_onnx(spec, unroll=unroll, time_steps=time_steps)
    got = run_graph(proto, signature, inputs, states, mask)
    want = ReferenceModel(spec).run(inputs, states=states, mask=mask)
    assert_results_close(got, want)
    return proto, got


def op_types(graph: onnx.GraphProto) -> Iterator[str]:
    """Every node's op type, subgraphs included."""
    for node in graph.node:
        yield node.op_type
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from op_types(attr.g)


def holey_mask(batch: int, steps: int) -> np.ndarray:
    """Row 0 unmasked, row 1 padded in the middle, row 2 padded at the end, row 3 padded at the start."""
    mask = np.ones((batch, steps), bool)
    if batch > 1:
        mask[1, steps // 2] = False
    if batch > 2:
        mask[2, -2:] = False
    if batch > 3:
        mask[3, :2] = False
    return mask
