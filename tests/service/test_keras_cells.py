"""RNN(cell), stacked cells, Bidirectional(RNN(cell)) and cuDNN layers served over HTTP, against the Keras numbers of
their parity fixtures (`tests/parity/make_fixtures_cells.py`); and the Keras Inputs that feed `initial_state`, sent by
name."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import as_list, assert_problem, close, open_session, predict, step
from service_server import settings_for

FIXTURES = Path(__file__).resolve().parents[1] / "parity" / "fixtures" / "cells"
MODELS = {  # model name in the repository -> fixture file
    "stack": "k3c_stack_mixed_state.keras",
    "stack_h0": "k3c_stack_initial_state.keras",
    "cudnn_gru": "k2_cudnn_gru_seq.k2.h5",
    "stateful_stack": "k3c_stateful_stack.keras",
}
# Every Bidirectional(RNN(cell)) model file, each under its file name with "." as "_".
BIDI_MODELS = {
    case["file"].replace(".", "_"): case["file"]
    for case in json.loads((FIXTURES / "cases.json").read_text())["cases"]
    if case["id"].startswith(("k3c_bidi_", "k2c_bidi_"))
}
MODELS.update(BIDI_MODELS)


def entry(name: str) -> dict[str, Any]:
    cases = json.loads((FIXTURES / "cases.json").read_text())["cases"]
    return next(case for case in cases if case["file"] == MODELS[name])


def data(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / entry(name)["data"]) as arrays:
        return {key: arrays[key] for key in arrays.files}


def output(body: dict[str, Any], name: str) -> Any:
    outputs = body["outputs"]
    return outputs[name] if isinstance(outputs, dict) else outputs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    models = tmp_path_factory.mktemp("cell_models")
    for name, file in MODELS.items():
        shutil.copy(FIXTURES / file, models / (name + "".join(Path(file).suffixes[-1:])))
    server = ServerThread(settings_for(models)).start()
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


def test_stacked_cells_predict_and_a_session_step_equal_keras(client: httpx.Client) -> None:
    arrays, case = data("stack"), entry("stack")
    model = client.get("/v1/models/stack").json()
    assert [s["name"] for s in model["states"]] == list(case["state_outputs"])
    body = predict(client, "stack", arrays["in_x"], return_state=True)
    assert close(output(body, "rnn"), arrays["out_0"])
    for name, k in case["state_outputs"].items():
        assert close(output(body, f"rnn:{k}"), arrays[f"out_{k}"]), name
        assert close(body["states"][k - 1], arrays[f"out_{k}"]), name
    # the same sequence through a session, in two steps
    sid = open_session(client, "stack", batch_size=2)["session_id"]
    first = step(client, sid, arrays["in_x"][:, :2])
    second = step(client, sid, arrays["in_x"][:, 2:], return_state=True)
    got = np.concatenate([np.asarray(output(first, "rnn")), np.asarray(output(second, "rnn"))], axis=1)
    assert close(got, arrays["out_0"])
    for name, k in case["state_outputs"].items():
        assert close(second["states"][k - 1], arrays[f"out_{k}"]), name


def test_a_cudnn_gru_predicts_and_steps_as_keras_converted_it(client: httpx.Client) -> None:
    arrays = data("cudnn_gru")
    assert close(output(predict(client, "cudnn_gru", arrays["in_x"]), "gru"), arrays["out_0"])
    sid = open_session(client, "cudnn_gru", batch_size=2)["session_id"]
    steps = [output(step(client, sid, arrays["in_x"][:, t : t + 1]), "gru") for t in range(arrays["in_x"].shape[1])]
    assert close(np.concatenate(steps, axis=1), arrays["out_0"])


def test_a_stateful_stack_session_replays_keras_batches(client: httpx.Client) -> None:
    arrays, case = data("stateful_stack"), entry("stateful_stack")
    sid = open_session(client, "stateful_stack")["session_id"]
    for j, batch in enumerate(case["stateful"]["batches"]):
        if batch["reset"] == "zeros":
            assert client.post(f"/v1/sessions/{sid}/reset").status_code == 200
        body = step(client, sid, arrays[f"b{j}_in_x"], return_state=True)
        assert close(output(body, "rnn"), arrays[f"b{j}_out_0"]), f"batch {j}"
        for i in range(len(case["stateful"]["states"])):
            assert close(body["states"][i], arrays[f"b{j}_state_{i}"]), f"batch {j} state {i}"


def test_initial_state_inputs_are_taken_by_their_keras_names(client: httpx.Client) -> None:
    arrays = data("stack_h0")
    model = client.get("/v1/models/stack_h0").json()
    assert [i["name"] for i in model["inputs"]] == ["x"]
    assert [(i["name"], i["shape"]) for i in model["state_inputs"]] == [("h0", [None, 4]), ("h1", [None, 3]),
                                                                        ("c1", [None, 3])]  # fmt: skip
    by_name = {name: as_list(arrays[f"in_{name}"]) for name in ("x", "h0", "h1", "c1")}
    response = client.post("/v1/models/stack_h0/predict", json={"inputs": by_name})
    assert response.status_code == 200, response.text
    assert close(output(response.json(), "rnn"), arrays["out_0"])
    # the same as the request's initial_state, in the signature's state order
    states = [by_name["h0"], by_name["h1"], by_name["c1"]]
    body = predict(client, "stack_h0", arrays["in_x"], initial_state=states)
    assert close(output(body, "rnn"), arrays["out_0"])
    # both at once is ambiguous; a session sets its states when it opens or is reset
    both = client.post("/v1/models/stack_h0/predict", json={"inputs": by_name, "initial_state": states})
    assert_problem(both, 400, contains="twice")
    sid = open_session(client, "stack_h0", batch_size=2, initial_state=states)["session_id"]
    refused = client.post(f"/v1/sessions/{sid}/step", json={"inputs": by_name})
    assert_problem(refused, 400, contains="initial_state when it opens")
    assert close(output(step(client, sid, arrays["in_x"]), "rnn"), arrays["out_0"])


def test_a_state_input_of_the_wrong_shape_is_named(client: httpx.Client) -> None:
    arrays = data("stack_h0")
    inputs = {"x": as_list(arrays["in_x"]), "h0": as_list(arrays["in_h0"][:, :2])}
    response = client.post("/v1/models/stack_h0/predict", json={"inputs": inputs})
    assert_problem(response, 400, contains="'h0'")


def test_the_open_inference_protocol_takes_initial_state_inputs_by_name(client: httpx.Client) -> None:
    arrays = data("stack_h0")
    tensors = [
        {"name": name, "datatype": "FP32", "shape": list(arrays[f"in_{name}"].shape),
         "data": arrays[f"in_{name}"].ravel().tolist()}
        for name in ("x", "h0", "h1", "c1")
    ]  # fmt: skip
    response = client.post("/v2/models/stack_h0/infer", json={"inputs": tensors})
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert close(np.reshape(out["data"], out["shape"]), arrays["out_0"])


def _predict_case(client: httpx.Client, name: str, prefix: str, states: list[Any] | None) -> dict[str, Any]:
    """One Keras run of a case as a predict: its inputs (initial-state Inputs by their Keras names), its explicit
    mask, the states carried from the previous batch of a stateful case."""
    case, arrays = entry(name), data(name)
    inputs = {i["name"]: as_list(arrays[f"{prefix}in_{i['name']}"]) for i in case["inputs"]}
    body: dict[str, Any] = {"inputs": inputs if len(inputs) > 1 else inputs["x"], "return_state": True}
    if "mask" in arrays:
        body["mask"] = as_list(arrays["mask"])
    if states is not None:
        body["initial_state"] = states
    response = client.post(f"/v1/models/{name}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(BIDI_MODELS))
def test_bidirectional_rnn_cells_predict_as_keras(client: httpx.Client, name: str) -> None:
    """Every output in the signature's order, and the states Keras returned; a stateful model's batches replayed
    with the states of the previous predict (sessions refuse a Bidirectional model)."""
    case, arrays = entry(name), data(name)
    model = client.get(f"/v1/models/{name}").json()
    outputs = [o["name"] for o in model["outputs"]]
    state_names = [s["name"] for s in model["states"]]
    assert len(outputs) == len(case["outputs"])
    batches = case["stateful"]["batches"] if "stateful" in case else [None]
    states: list[Any] | None = None
    for j, batch in enumerate(batches):
        prefix = f"b{j}_" if batch is not None else ""
        if batch is not None and batch["reset"] == "zeros":
            states = None
        body = _predict_case(client, name, prefix, states)
        for k, output_name in enumerate(outputs):
            assert close(output(body, output_name), arrays[f"{prefix}out_{k}"]), f"batch {j} output {output_name}"
        for state_name, k in case["state_outputs"].items():
            assert close(body["states"][state_names.index(state_name)], arrays[f"out_{k}"]), state_name
        if batch is not None:
            for i, state_name in enumerate(case["stateful"]["states"]):
                got = body["states"][state_names.index(state_name)]
                assert close(got, arrays[f"{prefix}state_{i}"]), f"batch {j} state {state_name}"
        states = body["states"]


def test_a_bidirectional_rnn_cells_model_refuses_a_session(client: httpx.Client) -> None:
    response = client.post("/v1/sessions", json={"model": "k3c_bidi_stateful_stack_keras"})
    assert_problem(response, 409, contains="Bidirectional")
