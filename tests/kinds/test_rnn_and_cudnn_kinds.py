"""The RNN, CuDNNGRU and CuDNNLSTM kinds (one module each): what they accept, refuse and say about weights and
states. Their numbers are checked against real Keras by the parity fixtures (tests/parity/fixtures/cells)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.importers import load_spec
from rnnserve.kinds import get_kind, supported_classes
from rnnserve.layers.cudnn import cudnn_gru_weights, cudnn_lstm_weights
from rnnserve.spec import state_layout

CELLS = Path(__file__).resolve().parents[1] / "parity" / "fixtures" / "cells"


def cell(class_name: str, units: int, **config: Any) -> dict[str, Any]:
    return {"class_name": class_name, "config": {"name": class_name.lower(), "units": units, **config}}


def rnn_config(cell_entry: dict[str, Any], **loop: Any) -> dict[str, Any]:
    return {"name": "rnn", "return_sequences": False, "cell": cell_entry, **loop}


def test_the_kinds_are_registered() -> None:
    assert {"RNN", "CuDNNGRU", "CuDNNLSTM"} <= set(supported_classes())


def test_a_single_cell_normalises_to_its_layer_config() -> None:
    kind = get_kind("RNN")
    config = kind.normalise(rnn_config(cell("GRUCell", 4, reset_after=False), go_backwards=True), "rnn", "3")
    assert config["stacked"] is False and config["go_backwards"] is True
    (only,) = config["cells"]
    assert (only["class_name"], only["layer"], only["key"]) == ("GRUCell", "GRU", "gru_cell")
    assert only["config"]["reset_after"] is False and only["config"]["go_backwards"] is True
    assert kind.state_names(config) == ("h",)
    assert list(kind.weight_shapes(config, 3)) == ["kernel", "recurrent_kernel", "bias"]


def test_stacked_cells_name_weights_and_states_by_keras_saving_names() -> None:
    kind = get_kind("RNN")
    stacked = {"class_name": "StackedRNNCells", "config": {"name": "s", "cells": [
        cell("GRUCell", 4), cell("LSTMCell", 3), cell("GRUCell", 2)]}}  # fmt: skip
    config = kind.normalise(rnn_config(stacked, return_state=True), "rnn", "2.15.0")
    assert kind.state_names(config) == ("gru_cell/h", "lstm_cell/h", "lstm_cell/c", "gru_cell_1/h")
    shapes = kind.weight_shapes(config, 5)
    assert shapes["gru_cell/kernel"] == (5, 12) and shapes["lstm_cell/kernel"] == (4, 12)
    assert shapes["gru_cell_1/kernel"] == (3, 6)
    assert kind.output_features(config, 5) == [2, 4, 3, 3, 2]
    assert kind.vars_path("lstm_cell") == "cell/cells/lstm_cell/vars" and kind.vars_path("") == "cell/vars"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (rnn_config(cell("ConvLSTM1DCell", 4)), "ConvLSTM1DCell"),
        (rnn_config(cell("GRUCell", 4, return_sequences=True)), "return_sequences"),
        (rnn_config(cell("GRUCell", 4, implementation_x=1)), "implementation_x"),
        (
            rnn_config(
                {
                    "class_name": "StackedRNNCells",
                    "config": {"cells": [cell("GRUCell", 2)], "reverse_state_order": True},
                }
            ),
            "reverse_state_order",
        ),  # fmt: skip
        (rnn_config(cell("GRUCell", 4), constants=1), "constants"),
    ],
    ids=["unknown-cell", "cell-with-loop-argument", "unknown-cell-argument", "reverse-state-order", "unknown-key"],
)
def test_rnn_refuses_what_it_cannot_reproduce(config: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedLayer, match=message):
        get_kind("RNN").normalise(config, "rnn", "3")


def test_a_cudnn_layer_is_its_plain_layer_with_fixed_arguments() -> None:
    gru = get_kind("CuDNNGRU").normalise({"name": "g", "units": 3, "time_major": False}, "g", "2.2.4")
    assert (gru["reset_after"], gru["recurrent_activation"], gru["activation"]) == (True, "sigmoid", "tanh")
    assert get_kind("CuDNNGRU").weight_shapes(gru, 2) == {"kernel": (2, 9), "recurrent_kernel": (3, 9), "bias": (18,)}
    lstm = get_kind("CuDNNLSTM").normalise({"name": "l", "units": 3, "unit_forget_bias": True}, "l", "2.2.4")
    assert get_kind("CuDNNLSTM").state_names(lstm) == ("h", "c")
    with pytest.raises(UnsupportedLayer, match="activation"):
        get_kind("CuDNNGRU").normalise({"name": "g", "units": 3, "activation": "relu"}, "g", "2.2.4")


def test_cudnn_weights_convert_as_keras_converts_them() -> None:
    """tf_keras `_convert_rnn_weights`: per gate, input kernels C <-> Fortran order, recurrent kernels transposed;
    GRU biases (2, 3U); LSTM biases summed."""
    rng = np.random.default_rng(0)
    kernel, recurrent = rng.normal(size=(2, 9)), rng.normal(size=(3, 9))
    converted = cudnn_gru_weights({"kernel": kernel, "recurrent_kernel": recurrent, "bias": np.arange(18.0)})
    assert np.array_equal(converted["kernel"][:, 3:6], kernel[:, 3:6].T.reshape((2, 3), order="F"))
    assert np.array_equal(converted["recurrent_kernel"][:, 6:], recurrent[:, 6:].T)
    assert np.array_equal(converted["bias"], np.arange(18.0).reshape(2, 9))
    lstm = cudnn_lstm_weights({"kernel": rng.normal(size=(2, 12)), "recurrent_kernel": rng.normal(size=(3, 12)),
                               "bias": np.arange(24.0)})  # fmt: skip
    assert np.array_equal(lstm["bias"], np.arange(12.0) + np.arange(12.0, 24.0))


def test_stacked_cells_import_from_every_container_with_one_state_layout() -> None:
    layouts = {
        path.name: [(s.name, s.units) for s in state_layout(load_spec(path))]
        for path in (CELLS / "k3c_stack_mixed_state.keras", CELLS / "k3c_stack_mixed_state.h5")
    }
    assert len(set(map(tuple, layouts.values()))) == 1
    k2 = load_spec(CELLS / "k2c_stack_mixed_state.k2.h5")
    assert [s.name for s in state_layout(k2)] == ["rnn/lstm_cell/h", "rnn/lstm_cell/c", "rnn/simple_rnn_cell/h",
                                                  "rnn/gru_cell/h"]  # fmt: skip


def test_a_legacy_h5_listing_the_cells_out_of_order_is_refused() -> None:
    kind = get_kind("RNN")
    names = ["gru_cell/kernel", "gru_cell/recurrent_kernel", "gru_cell/bias"]
    with pytest.raises(ModelFileError, match="in order"):
        kind.stored_weight_names(["rnn/s/gru_cell/bias:0", "rnn/s/gru_cell/kernel:0", "rnn/s/gru_cell/x:0"], names)
    assert kind.stored_weight_names(["a/kernel:0"], ["kernel"]) is None


def _bidi_of(rnn: dict[str, Any], **options: Any) -> dict[str, Any]:
    config = {"name": "bi", "merge_mode": "concat", "layer": {"class_name": "RNN", "config": rnn}, **options}
    return get_kind("Bidirectional").normalise(json.loads(json.dumps(config)), "bi", "3")


STACK = {"class_name": "StackedRNNCells", "config": {"name": "s", "cells": [cell("GRUCell", 4), cell("LSTMCell", 3)]}}


def test_bidirectional_wraps_an_rnn_of_stacked_cells() -> None:
    kind = get_kind("Bidirectional")
    config = _bidi_of(rnn_config(STACK, return_sequences=True, return_state=True))
    inner = config["layer"]["config"]
    # Keras forces zero_output_for_mask = return_sequences on the loop and on every cell (a cell is its layer)
    assert inner["zero_output_for_mask"] is True
    assert all(c["config"]["zero_output_for_mask"] is True for c in inner["cells"])
    own = ("gru_cell/h", "lstm_cell/h", "lstm_cell/c")
    assert kind.state_names(config) == tuple(f"{d}/{s}" for d in ("forward", "backward") for s in own)
    assert kind.output_features(config, 5) == [6, 4, 3, 3, 4, 3, 3]
    shapes = kind.weight_shapes(config, 5)
    assert shapes["forward/gru_cell/kernel"] == (5, 12) and shapes["backward/lstm_cell/kernel"] == (4, 12)
    assert kind.vars_path("forward/lstm_cell") == "forward_layer/cell/cells/lstm_cell/vars"
    assert kind.vars_path("backward") == "backward_layer/cell/vars"
    assert set(kind.parts(config)) == {"forward/gru_cell", "forward/lstm_cell", "backward/gru_cell",
                                       "backward/lstm_cell"}  # fmt: skip


def test_a_bidirectional_single_cell_is_the_cell_layer() -> None:
    config = _bidi_of(rnn_config(cell("GRUCell", 3, dropout=0.25)))
    kind = get_kind("Bidirectional")
    assert kind.state_names(config) == ("forward/h", "backward/h")
    own = ("kernel", "recurrent_kernel", "bias")
    assert list(kind.weight_shapes(config, 2)) == [f"{d}/{w}" for d in ("forward", "backward") for w in own]
    assert kind.own_config(config)["dropout"] == 0.25  # what Monte-Carlo dropout and the penalties read


def test_a_legacy_h5_bidirectional_stack_is_read_direction_by_direction() -> None:
    kind = get_kind("Bidirectional")
    cells = ["gru_cell/kernel", "gru_cell/recurrent_kernel", "gru_cell/bias", "lstm_cell/kernel"]
    names = [f"{d}/{n}" for d in ("forward", "backward") for n in cells]
    paths = [f"m/bi/{d}_rnn/stacked_rnn_cells/{n}:0" for d in ("backward", "forward") for n in cells]
    assert kind.stored_weight_names(paths, names) == [*names[4:], *names[:4]]
    swapped = [*paths[:2], paths[3], paths[2], *paths[4:]]
    with pytest.raises(ModelFileError, match="in order"):
        kind.stored_weight_names(swapped, names)
    with pytest.raises(ModelFileError, match="direction"):
        kind.stored_weight_names(["m/bi/x/gru_cell/kernel", *paths[1:]], names)
    assert kind.stored_weight_names(["bi/forward_gru/gru_cell/kernel:0"], ["forward/kernel"]) is None


def test_a_bidirectional_backward_rnn_other_than_the_forward_copy_is_refused() -> None:
    forward = rnn_config(STACK)
    backward = {"class_name": "RNN", "config": rnn_config({**STACK, "config": {"name": "s", "cells": [
        cell("GRUCell", 4), cell("LSTMCell", 2)]}}, go_backwards=True)}  # fmt: skip
    with pytest.raises(UnsupportedLayer, match="backward_layer"):
        _bidi_of(forward, backward_layer=backward)
    same = {"class_name": "RNN", "config": rnn_config(STACK, go_backwards=True)}
    assert _bidi_of(forward, backward_layer=same)["layer"]["config"]["stacked"] is True


def test_bidirectional_does_not_wrap_a_cell_or_dense() -> None:
    config = {"name": "bi", "merge_mode": "concat", "layer": cell("GRUCell", 2)}
    with pytest.raises(UnsupportedLayer, match="RNN"):
        get_kind("Bidirectional").normalise(json.loads(json.dumps(config)), "bi", "3")
