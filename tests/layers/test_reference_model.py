"""ReferenceModel: Keras spot checks, mask propagation, the explicit mask, states, initial_state, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from layer_specs import bidirectional_layer, close, dense_layer, embedding_layer, model, rnn_config, rnn_layer

from rnnserve.errors import InvalidInput, ModelFileError, UnsupportedLayer
from rnnserve.layers.activations import canonical_activation
from rnnserve.layers.cells import make_cell
from rnnserve.layers.model import ReferenceModel
from rnnserve.layers.recurrent import run_recurrent
from rnnserve.spec import InputSpec, LayerSpec, TensorRef

R = TensorRef
SPOT = Path(__file__).parent / "fixtures" / "keras_spot.npz"
TOKENS_IN = (InputSpec("tok", (None, 8), "int64"),)


# ---- real Keras spot checks (tests/layers/make_keras_spot.py) ------------------------------------------------


@pytest.fixture(scope="module")
def spot() -> dict[str, np.ndarray]:
    with np.load(SPOT) as data:
        return dict(data)


def _w(spot: dict[str, np.ndarray], case: str, layer: str) -> dict[str, np.ndarray]:
    prefix = f"{case}/w/{layer}/"
    return {k[len(prefix) :]: v for k, v in spot.items() if k.startswith(prefix)}


def _emb(spot: dict[str, np.ndarray], case: str) -> LayerSpec:
    config = {"name": "emb", "input_dim": 10, "output_dim": 3, "mask_zero": True}
    return LayerSpec("Embedding", "emb", config, _w(spot, case, "emb"), (R("tok"),))


def _layer(class_name: str, name: str, config: dict[str, Any], weights: dict, source: str, **kw: Any) -> LayerSpec:
    return LayerSpec(class_name, name, config, weights, (R(source),), **kw)


def _spot_specs(spot: dict[str, np.ndarray]) -> dict[str, Any]:
    """The spec of each case of make_keras_spot.py, written by hand."""

    def w(case: str, layer: str) -> dict[str, np.ndarray]:
        return _w(spot, case, layer)

    def tokens(case: str, *layers: LayerSpec, **outputs: TensorRef) -> Any:
        return model(TOKENS_IN, (_emb(spot, case), *layers), outputs)

    def masked_x(case: str, shape: tuple[int | None, ...], lstm: dict[str, Any], version: str = "3") -> Any:
        layers = (
            _layer("Masking", "masking", {"mask_value": 0.0}, {}, "x"),
            _layer("LSTM", "lstm", lstm, w(case, "lstm"), "masking"),
        )
        outputs = {"y": R("lstm"), "h": R("lstm", 1), "c": R("lstm", 2)}
        return model((InputSpec("x", shape),), layers, outputs, keras_version=version)

    def bidirectional(class_name: str, merge_mode: str | None, **config: Any) -> dict[str, Any]:
        return {
            "merge_mode": merge_mode,
            "layer": {"class_name": class_name, "config": rnn_config(class_name, 3, **config)},
        }

    dense = {"class_name": "Dense", "config": {"units": 4, "activation": "softmax", "use_bias": True}}
    gru_before = rnn_config(
        "GRU", 4, reset_after=False, activation="relu", recurrent_activation="hard_sigmoid", return_state=True
    )
    k2_lstm = rnn_config(
        "LSTM",
        4,
        return_sequences=True,
        return_state=True,
        time_major=True,
        recurrent_activation=canonical_activation("hard_sigmoid", "2.21.0"),
    )
    rnn = rnn_config("SimpleRNN", 4, return_sequences=True)
    return {
        "gru_reset_after": tokens(
            "gru_reset_after",
            _layer("GRU", "gru", rnn_config("GRU", 4, return_sequences=True), w("gru_reset_after", "gru"), "emb"),
            y=R("gru"),
        ),
        "gru_reset_before": tokens(
            "gru_reset_before",
            _layer("GRU", "gru", gru_before, w("gru_reset_before", "gru"), "emb"),
            y=R("gru"),
            h=R("gru", 1),
        ),
        "bi_lstm_td": tokens(
            "bi_lstm_td",
            _layer(
                "Bidirectional",
                "bi",
                bidirectional("LSTM", "concat", return_sequences=True),
                w("bi_lstm_td", "bi"),
                "emb",
            ),
            _layer("TimeDistributed", "td", {"layer": dense}, w("bi_lstm_td", "td"), "bi"),
            y=R("td"),
        ),
        "bi_gru_none": tokens(
            "bi_gru_none",
            _layer("Bidirectional", "bi", bidirectional("GRU", None, return_state=True), w("bi_gru_none", "bi"), "emb"),
            yf=R("bi"),
            yb=R("bi", 1),
            hf=R("bi", 2),
            hb=R("bi", 3),
        ),
        "lstm_backwards": masked_x(
            "lstm_backwards",
            (None, 6, 3),
            rnn_config("LSTM", 5, return_sequences=True, return_state=True, go_backwards=True),
        ),
        "rnn_initial_state": model(
            (InputSpec("x", (None, 5, 3)), InputSpec("h0", (None, 4))),
            (_layer("SimpleRNN", "rnn", rnn, w("rnn_initial_state", "rnn"), "x", initial_state=(R("h0"),)),),
            {"y": R("rnn")},
        ),
        "k2_lstm_time_major": masked_x("k2_lstm_time_major", (6, 2, 3), k2_lstm, "2.21.0"),
    }


SPOT_CASES = [
    "gru_reset_after",
    "gru_reset_before",
    "bi_lstm_td",
    "bi_gru_none",
    "lstm_backwards",
    "rnn_initial_state",
    "k2_lstm_time_major",
]


@pytest.mark.parametrize("case", SPOT_CASES)
def test_matches_real_keras(spot: dict[str, np.ndarray], case: str) -> None:
    spec = _spot_specs(spot)[case]
    feeds = {k.rsplit("/", 1)[1]: v for k, v in spot.items() if k.startswith(f"{case}/in/")}
    result = ReferenceModel(spec).run(feeds)
    assert list(result.outputs) == list(spec.output_names)
    for k, name in enumerate(spec.output_names):
        assert result.outputs[name].dtype == np.float32
        assert close(result.outputs[name], spot[f"{case}/out/{k}"]), name


def test_initial_state_input_given_through_states(spot: dict[str, np.ndarray]) -> None:
    spec = _spot_specs(spot)["rnn_initial_state"]
    reference = ReferenceModel(spec)
    assert [t.name for t in reference.signature.inputs] == ["x"]
    assert dict(reference.signature.initial_state_inputs) == {"rnn/h": "h0"}
    x, h0 = spot["rnn_initial_state/in/x"], spot["rnn_initial_state/in/h0"]
    via_states = reference.run({"x": x}, states=[h0])
    assert close(via_states.outputs["y"], spot["rnn_initial_state/out/0"])
    zeros = reference.run({"x": x})
    np.testing.assert_array_equal(zeros.outputs["y"], reference.run({"x": x}, states=[np.zeros_like(h0)]).outputs["y"])


# ---- hand-built models ----------------------------------------------------------------------------------------


def _token_model(rng: np.random.Generator, mask_zero: bool = True):
    layers = (
        embedding_layer("emb", 10, 3, rng, "tok", mask_zero=mask_zero),
        dense_layer("proj", 3, 3, rng, "emb", activation="relu"),
        rnn_layer("GRU", "gru", 3, 4, rng, "proj", return_sequences=True),
        rnn_layer("LSTM", "lstm", 4, 5, rng, "gru", return_sequences=False, return_state=True),
    )
    outputs = {"y": R("lstm"), "h": R("lstm", 1), "c": R("lstm", 2)}
    spec = model((InputSpec("tok", (None, None), "int64"),), layers, outputs)
    return spec, ReferenceModel(spec)


def _by_hand(spec, tokens: np.ndarray, mask: np.ndarray | None) -> list[np.ndarray]:
    """The same pipeline from the pieces: Embedding, Dense, then both RNNs with `mask`."""
    emb, proj, gru, lstm = spec.layers
    x = emb.weights["embeddings"].astype(float)[tokens]
    x = np.maximum(x @ proj.weights["kernel"] + proj.weights["bias"], 0.0)
    cell = make_cell("GRU", gru.config, gru.weights)
    x, _ = run_recurrent(cell, x, mask, return_sequences=True)
    y, (h, c) = run_recurrent(make_cell("LSTM", lstm.config, lstm.weights), x, mask)
    return [y, h, c]


def test_mask_propagates_from_embedding_through_dense_and_rnn() -> None:
    spec, reference = _token_model(np.random.default_rng(41))
    tokens = np.array([[0, 0, 4, 9, 0, 1, 0, 0], [3, 5, 2, 0, 7, 1, 1, 0]])
    result = reference.run({"tok": tokens})
    for got, want in zip(result.outputs.values(), _by_hand(spec, tokens, tokens != 0), strict=True):
        assert close(got, want)


def test_explicit_mask_is_anded_and_survives_embedding_without_mask_zero() -> None:
    tokens = np.array([[0, 2, 4, 9, 0, 1], [3, 5, 2, 6, 7, 1]])
    explicit = np.array([[1, 1, 1, 0, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=bool)
    spec, reference = _token_model(np.random.default_rng(42))
    got = reference.run({"tok": tokens}, mask=explicit).outputs
    assert all(close(g, w) for g, w in zip(got.values(), _by_hand(spec, tokens, explicit & (tokens != 0)), strict=True))
    spec, reference = _token_model(np.random.default_rng(42), mask_zero=False)
    got = reference.run({"tok": tokens}, mask=explicit).outputs
    assert all(close(g, w) for g, w in zip(got.values(), _by_hand(spec, tokens, explicit), strict=True))
    unmasked = reference.run({"tok": tokens}).outputs
    assert all(close(g, w) for g, w in zip(unmasked.values(), _by_hand(spec, tokens, None), strict=True))


def _stacked(rng: np.random.Generator, gru_reset_after: bool = True):
    layers = (
        rnn_layer("LSTM", "l1", 3, 4, rng, "x", return_sequences=True),
        rnn_layer("GRU", "l2", 4, 3, rng, "l1", return_sequences=True, reset_after=gru_reset_after),
        rnn_layer("SimpleRNN", "l3", 3, 5, rng, "l2", return_sequences=True),
        dense_layer("out", 5, 2, rng, "l3"),
    )
    return ReferenceModel(model((InputSpec("x", (None, None, 3)),), layers, {"y": R("out")}))


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("chunks", [[1, 5], [3, 3], [2, 1, 2, 1]])
def test_stacked_model_streams_in_chunks(reset_after: bool, chunks: list[int]) -> None:
    reference = _stacked(np.random.default_rng(43), reset_after)
    assert [s.name for s in reference.signature.states] == ["l1/h", "l1/c", "l2/h", "l3/h"]
    x = np.random.default_rng(44).normal(size=(2, 6, 3)).astype(np.float32)
    whole = reference.run({"x": x})
    states, pieces, start = None, [], 0
    for size in chunks:
        part = reference.run({"x": x[:, start : start + size]}, states=states)
        pieces.append(part.outputs["y"])
        states = part.states
        start += size
    assert close(np.concatenate(pieces, axis=1), whole.outputs["y"])
    assert all(close(a, b) and a.dtype == np.float32 for a, b in zip(states, whole.states, strict=True))


def test_encoder_states_feed_decoder_initial_state() -> None:
    rng = np.random.default_rng(45)
    encoder = rnn_layer("LSTM", "enc", 3, 4, rng, "src", return_state=True)
    decoder = rnn_layer(
        "LSTM", "dec", 3, 4, rng, "tgt", return_sequences=True, initial_state=(R("enc", 1), R("enc", 2))
    )
    spec = model(
        (InputSpec("src", (None, None, 3)), InputSpec("tgt", (None, None, 3))), (encoder, decoder), {"y": R("dec")}
    )
    reference = ReferenceModel(spec)
    src, tgt = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4, 3))
    result = reference.run({"src": src, "tgt": tgt})
    _, enc_states = run_recurrent(make_cell("LSTM", encoder.config, encoder.weights), src)
    decoder_cell = make_cell("LSTM", decoder.config, decoder.weights)
    y, _ = run_recurrent(decoder_cell, tgt, None, enc_states, return_sequences=True)
    assert close(result.outputs["y"], y)
    zeros = [np.zeros((2, 4), np.float32)] * 4
    y0, _ = run_recurrent(decoder_cell, tgt, return_sequences=True)
    assert close(reference.run({"src": src, "tgt": tgt}, states=zeros).outputs["y"], y0)


def test_bidirectional_model_with_states_and_time_major_explicit_mask() -> None:
    rng = np.random.default_rng(46)
    bi = bidirectional_layer("GRU", "bi", 3, 4, rng, "x", "sum", return_sequences=True, time_major=True)
    spec = model((InputSpec("x", (None, None, 3)),), (bi,), {"y": R("bi")}, keras_version="2.21.0")
    reference = ReferenceModel(spec)
    assert [s.name for s in reference.signature.states] == ["bi/forward/h", "bi/backward/h"]
    x = rng.normal(size=(5, 2, 3))  # (time, batch, features)
    mask = np.array([[1, 1, 0, 1, 1], [1, 0, 0, 0, 1]], dtype=bool)  # (batch, time), as every caller gives it
    y = reference.run({"x": x}, mask=mask).outputs["y"]
    assert y.shape == (5, 2, 4)
    np.testing.assert_array_equal(y[~mask.T], 0.0)


def test_input_and_state_errors() -> None:
    spec, reference = _token_model(np.random.default_rng(47))
    tokens = np.array([[1, 2, 3]])
    with pytest.raises(InvalidInput, match="missing input 'tok'"):
        reference.run({})
    with pytest.raises(InvalidInput, match="unknown input"):
        reference.run({"tok": tokens, "other": tokens})
    with pytest.raises(InvalidInput, match="'tok'.*out of range"):
        reference.run({"tok": np.array([[1, 10]])})
    with pytest.raises(InvalidInput, match="expected 3 state arrays"):
        reference.run({"tok": tokens}, states=[np.zeros((1, 4))])
    with pytest.raises(InvalidInput, match="mask"):
        reference.run({"tok": tokens}, mask=np.ones((1, 4), bool))
    with pytest.raises(InvalidInput, match="dimensions"):
        reference.run({"tok": np.array([1, 2, 3])})


def test_model_errors() -> None:
    rng = np.random.default_rng(48)
    x_in = (InputSpec("x", (None, None, 3)),)
    with pytest.raises(UnsupportedLayer, match="'conv'.*Conv1D"):
        ReferenceModel(model(x_in, (LayerSpec("Conv1D", "conv", {}, {}, (R("x"),)),), {"y": R("conv")}))
    with pytest.raises(ModelFileError, match="before it is produced"):
        ReferenceModel(model(x_in, (rnn_layer("GRU", "g", 3, 2, rng, "nope"),), {"y": R("g")}))
    with pytest.raises(ModelFileError, match="model output"):
        ReferenceModel(model(x_in, (rnn_layer("GRU", "g", 3, 2, rng, "x"),), {"y": R("g", 1)}))
