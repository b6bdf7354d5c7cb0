"""`to_onnx`: graph I/O names and types, validity for each layer type, signature shapes, and refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from export_specs import bidirectional_layer, dense_layer, model, one_layer, rnn_layer

from rnnserve.errors import InvalidArgument, ModelFileError, UnsupportedLayer
from rnnserve.export.builder import OPSET
from rnnserve.export.convert import to_onnx
from rnnserve.spec import InputSpec, LayerSpec, TensorRef

F, U = 3, 4


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value.type.tensor_type.shape.dim]


def _every_layer_type() -> dict[str, object]:
    rng = np.random.default_rng(31)
    emb = LayerSpec(
        "Embedding",
        "emb",
        {"input_dim": 7, "output_dim": F, "mask_zero": True},
        {"embeddings": rng.normal(size=(7, F)).astype(np.float32)},
        (TensorRef("tokens"),),
    )
    td = LayerSpec(
        "TimeDistributed",
        "td",
        {"layer": {"class_name": "Dense", "config": {"units": F, "activation": "relu", "use_bias": True}}},
        {"kernel": rng.normal(size=(F, F)).astype(np.float32), "bias": np.zeros(F, np.float32)},
        (TensorRef("emb"),),
    )
    return {
        "SimpleRNN": one_layer(rnn_layer("SimpleRNN", "r", "x", F, U, rng, return_sequences=True), F),
        "GRU": one_layer(rnn_layer("GRU", "r", "x", F, U, rng, reset_after=False), F),
        "LSTM": one_layer(rnn_layer("LSTM", "r", "x", F, U, rng, return_state=True), F),
        "Bidirectional": one_layer(bidirectional_layer("LSTM", "b", "x", F, U, rng, None, return_sequences=True), F),
        "Dense": one_layer(dense_layer("d", "x", F, U, rng, activation="gelu"), F),
        "Masking": model(
            [InputSpec("x", (None, None, F))],
            [LayerSpec("Masking", "m", {"mask_value": 0.0}, {}, (TensorRef("x"),))],
            {"y": TensorRef("m")},
        ),
        "Dropout": model(
            [InputSpec("x", (None, None, F))],
            [LayerSpec("Dropout", "d", {"rate": 0.2}, {}, (TensorRef("x"),)), rnn_layer("GRU", "r", "d", F, U, rng)],
            {"y": TensorRef("r")},
        ),
        "Embedding+TimeDistributed": model(
            [InputSpec("tokens", (None, None), "int64")], [emb, td], {"y": TensorRef("td")}
        ),
    }


@pytest.mark.parametrize("case", sorted(_every_layer_type()))
@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_every_layer_type_passes_checker_and_strict_shape_inference(case, unroll):
    spec = _every_layer_type()[case]
    proto, _ = to_onnx(spec, unroll=unroll, time_steps=5)
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    assert proto.opset_import[0].version == OPSET


def test_graph_inputs_and_outputs_are_named_as_the_signature_says():
    rng = np.random.default_rng(32)
    layers = [
        rnn_layer("LSTM", "enc", "x", F, U, rng, return_sequences=True),
        rnn_layer("GRU", "dec", "enc", U, 2, rng, return_sequences=True, return_state=True),
    ]
    spec = model([InputSpec("x", (None, None, F))], layers, {"seq": TensorRef("dec"), "h": TensorRef("dec", 1)})
    proto, signature = to_onnx(spec)
    inputs = {i.name: i for i in proto.graph.input}
    assert list(inputs) == ["x", "mask", "enc/h", "enc/c", "dec/h"]
    assert _dims(inputs["x"]) == ["batch", "time", F]
    assert _dims(inputs["mask"]) == ["batch", "time"]
    assert inputs["mask"].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    assert _dims(inputs["enc/c"]) == ["batch", U]
    outputs = [o.name for o in proto.graph.output]
    assert outputs == ["seq", "h", "enc/h:out", "enc/c:out", "dec/h:out"]
    assert [(o.name, o.shape) for o in signature.outputs] == [("seq", (None, None, 2)), ("h", (None, 2))]
    assert [(s.name, s.shape) for s in signature.states] == [
        ("enc/h", (None, U)),
        ("enc/c", (None, U)),
        ("dec/h", (None, 2)),
    ]


def test_stateful_fixed_batch_stays_symbolic_in_the_graph():
    rng = np.random.default_rng(33)
    spec = model(
        [InputSpec("x", (2, 5, F))], [rnn_layer("GRU", "r", "x", F, U, rng, stateful=True)], {"y": TensorRef("r")}
    )
    proto, signature = to_onnx(spec)
    assert _dims(proto.graph.input[0]) == ["batch", "time", F]
    assert signature.stateful and signature.batch_size == 2
    assert signature.inputs[0].shape == (2, None, F)
    assert signature.states[0].shape == (2, U)


def test_unrolled_without_a_fixed_time_is_refused():
    rng = np.random.default_rng(34)
    spec = one_layer(rnn_layer("GRU", "r", "x", F, U, rng), F)
    with pytest.raises(InvalidArgument, match="time_steps"):
        to_onnx(spec, unroll=True)
    with pytest.raises(InvalidArgument, match="time_steps"):
        to_onnx(spec, unroll=True, time_steps=0)
    proto, _ = to_onnx(spec, unroll=True, time_steps=3)
    assert _dims(proto.graph.input[0]) == ["batch", 3, F]


def test_unknown_layer_class_is_named():
    spec = model(
        [InputSpec("x", (None, None, F))],
        [LayerSpec("ConvLSTM1D", "c", {}, {}, (TensorRef("x"),))],
        {"y": TensorRef("c")},
    )
    with pytest.raises(UnsupportedLayer, match="ConvLSTM1D"):
        to_onnx(spec)


def test_wrong_weight_shape_names_layer_and_weight():
    rng = np.random.default_rng(35)
    layer = rnn_layer("LSTM", "enc", "x", F, U, rng)
    weights = dict(layer.weights, recurrent_kernel=np.zeros((U, 3 * U), np.float32))
    spec = one_layer(LayerSpec("LSTM", "enc", layer.config, weights, layer.inputs), F)
    with pytest.raises(ModelFileError, match=r"'enc'.*'recurrent_kernel'.*\(4, 12\)"):
        to_onnx(spec)


def test_input_features_must_match_the_kernel():
    rng = np.random.default_rng(36)
    spec = one_layer(rnn_layer("GRU", "r", "x", F + 1, U, rng), F)
    with pytest.raises(ModelFileError, match="'kernel'"):
        to_onnx(spec)


def test_glu_in_a_cell_is_refused():
    rng = np.random.default_rng(37)
    spec = one_layer(rnn_layer("SimpleRNN", "r", "x", F, U, rng, activation="glu"), F)
    with pytest.raises(InvalidArgument, match="glu"):
        to_onnx(spec)
