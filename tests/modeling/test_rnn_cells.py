"""layer_rnn() with rnn_cell_simple/gru/lstm and rnn_cells_stack(): the configs Keras writes, the weights and states the
importers name, and numbers equal to the matching layer's (single cell) and to onnxruntime's (stacked cells); and
bidirectional() around layer_rnn(), against the Keras fixture of the same model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnnserve.errors import InvalidArgument
from rnnserve.importers import load_spec
from rnnserve.layers.model import ReferenceModel
from rnnserve.modeling import (
    bidirectional,
    clear_session,
    keras_model,
    keras_model_sequential,
    layer_gru,
    layer_input,
    layer_lstm,
    layer_masking,
    layer_rnn,
    rnn_cell_gru,
    rnn_cell_lstm,
    rnn_cell_simple,
    rnn_cells_stack,
    set_random_seed,
)
from rnnserve.runtime.ort_model import OrtModel
from rnnserve.spec import state_layout

CELLS = Path(__file__).resolve().parents[1] / "parity" / "fixtures" / "cells"
X = np.random.default_rng(3).normal(size=(2, 6, 3)).astype(np.float32)


@pytest.fixture(autouse=True)
def fresh_names() -> None:
    clear_session()
    set_random_seed(11)


def test_stacked_cells_config_equals_the_one_keras_saved() -> None:
    x = layer_input(shape=(6, 3), name="x")
    cells = [rnn_cell_gru(4, name="enc"), rnn_cell_lstm(3, name="mid"), rnn_cell_simple(5, name="dec")]
    y = layer_rnn(x, cells, return_sequences=True, return_state=True, name="rnn")
    built = keras_model(x, y).to_spec()
    keras = load_spec(CELLS / "k3c_stack_mixed_state.keras")
    assert built.layer("rnn").config == keras.layer("rnn").config
    assert list(built.layer("rnn").weights) == list(keras.layer("rnn").weights)
    assert built.output_names == keras.output_names
    assert [s.name for s in state_layout(built)] == [s.name for s in state_layout(keras)]


@pytest.mark.parametrize(
    ("cell", "layer"),
    [
        (lambda: rnn_cell_gru(4, reset_after=False), lambda m: layer_gru(m, units=4, reset_after=False)),
        (lambda: rnn_cell_lstm(4, activation="relu"), lambda m: layer_lstm(m, units=4, activation="relu")),
    ],
    ids=["gru", "lstm"],
)
def test_a_single_cell_computes_what_its_layer_computes(cell: Callable[[], Any], layer: Callable[[Any], Any]) -> None:
    via_cell = keras_model_sequential(input_shape=(6, 3))
    layer_rnn(via_cell, cell(), return_sequences=True)
    plain = keras_model_sequential(input_shape=(6, 3))
    layer(plain)
    plain.layers[-1].set_weights(via_cell.layers[-1].get_weights())
    got = ReferenceModel(via_cell.to_spec()).run({via_cell.to_spec().inputs[0].name: X})
    want = ReferenceModel(plain.to_spec()).run({plain.to_spec().inputs[0].name: X})
    assert np.allclose(next(iter(got.outputs.values()))[:, -1], next(iter(want.outputs.values())), atol=1e-6)


def test_stacked_cells_export_with_the_reference_numbers_and_nested_initial_states() -> None:
    x = layer_input(shape=(6, 3), name="x")
    h0, h1, c1 = (
        layer_input(shape=(2,), name="h0"),
        layer_input(shape=(4,), name="h1"),
        layer_input(shape=(4,), name="c1"),
    )
    stack = rnn_cells_stack(rnn_cell_simple(2), rnn_cell_lstm(4))
    y = layer_rnn(return_sequences=True, cell=stack, name="rnn")(x, initial_state=[h0, [h1, c1]])
    spec = keras_model([x, h0, h1, c1], y).to_spec()
    assert [(s.name, s.units) for s in state_layout(spec)] == [
        ("rnn/simple_rnn_cell/h", 2), ("rnn/lstm_cell/h", 4), ("rnn/lstm_cell/c", 4)
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    feeds = {"x": X, **{n: rng.normal(size=(2, u)).astype(np.float32) for n, u in (("h0", 2), ("h1", 4), ("c1", 4))}}
    reference, onnx = ReferenceModel(spec).run(feeds), OrtModel(spec).run(feeds)
    assert np.allclose(reference.outputs["rnn"], onnx.outputs["rnn"], atol=1e-5)
    zeros = ReferenceModel(spec).run({"x": X})
    assert not np.allclose(zeros.outputs["rnn"], reference.outputs["rnn"])


def test_cells_take_no_loop_arguments_and_rnn_takes_only_cells() -> None:
    with pytest.raises(InvalidArgument, match="loop arguments"):
        rnn_cell_gru(4, return_sequences=True)
    with pytest.raises(InvalidArgument, match="cell"):
        layer_rnn(cell=layer_gru(units=4))
    with pytest.raises(InvalidArgument, match="cells"):
        rnn_cells_stack([])
    x = layer_input(shape=(6, 3))
    with pytest.raises(InvalidArgument, match="initial_state"):
        layer_rnn(cell=[rnn_cell_gru(2), rnn_cell_gru(3)])(x, initial_state=[layer_input(shape=(3,))])


def _unnamed(value: Any) -> Any:
    """A config without its layer and cell names (Keras numbers them by the session's count)."""
    if isinstance(value, dict):
        return {k: _unnamed(v) for k, v in value.items() if k != "name"}
    if isinstance(value, list):
        return [_unnamed(v) for v in value]
    return value


def test_bidirectional_around_stacked_cells_is_the_keras_model() -> None:
    """bidirectional(layer_rnn(rnn_cells_stack(...))): Keras' config and weight names; with the fixture's weights,
    Keras' numbers on the numpy reference and on onnxruntime."""
    x = layer_input(shape=(7, 3), name="x")
    masked = layer_masking(x, mask_value=0.5, name="masking")
    cells = rnn_cells_stack([rnn_cell_gru(4), rnn_cell_lstm(3), rnn_cell_simple(2)])
    model = keras_model(x, bidirectional(masked, layer_rnn(cell=cells, return_sequences=True), name="bi"))
    keras = load_spec(CELLS / "k3c_bidi_stack_concat_masked.keras")
    built = model.to_spec()
    assert _unnamed(built.layer("bi").config) == _unnamed(keras.layer("bi").config)
    assert list(built.layer("bi").weights) == list(keras.layer("bi").weights)
    assert [s.name for s in state_layout(built)] == [s.name for s in state_layout(keras)]
    model.layers[-1].set_weights(list(keras.layer("bi").weights.values()))
    spec = model.to_spec()
    with np.load(CELLS / "k3c_bidi_stack_concat_masked.npz") as data:
        feeds, want = {"x": data["in_x"]}, data["out_0"]
    for runner in (ReferenceModel(spec), OrtModel(spec)):
        got = runner.run(feeds).outputs["bi"]
        assert np.all(np.abs(got - want) <= 1e-5 + 1e-5 * np.abs(want))


def test_bidirectional_copies_a_single_cell_rnn_both_ways() -> None:
    x = layer_input(shape=(6, 3), name="x")
    bi = bidirectional(layer=layer_rnn(cell=rnn_cell_lstm(3, dropout=0.25), return_state=True), merge_mode="sum")
    outputs = bi(x)
    assert [tuple(o.shape) for o in outputs] == [(None, 3)] + [(None, 3)] * 4
    spec = keras_model(x, outputs).to_spec()
    assert [s.name for s in state_layout(spec)] == [f"{bi.name}/{d}/{s}" for d in ("forward", "backward")
                                                     for s in ("h", "c")]  # fmt: skip
    forward, backward = bi.forward, bi.backward
    assert (forward.go_backwards, backward.go_backwards) == (False, True)
    assert forward.cells[0] is not backward.cells[0] and backward.cells[0].layer.dropout == 0.25
    assert not np.array_equal(forward.weights["kernel"], backward.weights["kernel"])
