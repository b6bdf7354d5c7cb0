"""Discovery, health and stateless predict through a real server."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from service_client import as_list, assert_problem, close, predict
from service_models import FEATURES, MODELS
from service_server import BROKEN_MODEL

from rnnserve.layers.model import ReferenceModel


def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"][BROKEN_MODEL] == "failed"
    assert ready.json()["models"]["lstm"] == "ready"


def test_models_lists_every_entry_with_its_signature(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {*MODELS, BROKEN_MODEL}
    lstm = by_name["lstm"]
    assert lstm["status"] == "ready"
    assert lstm["inputs"] == [{"name": "x", "shape": [None, None, FEATURES], "dtype": "float32"}]
    assert [s["shape"] for s in lstm["states"]] == [[None, 4], [None, 4]]
    assert lstm["outputs"][0]["name"] == "y"
    assert lstm["stateful"] is False and lstm["sessions"] is True
    assert by_name["bidirectional"]["sessions"] is False


def test_a_model_that_fails_to_load_is_reported_and_the_others_serve(client: httpx.Client) -> None:
    broken = client.get(f"/v1/models/{BROKEN_MODEL}").json()
    assert broken["status"] == "failed" and broken["error"]
    response = client.post(f"/v1/models/{BROKEN_MODEL}/predict", json={"inputs": [[[0.0] * FEATURES]]})
    assert_problem(response, 503, contains="failed")


def test_unknown_model_is_a_404_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/models/nope"), 404, contains="nope")
    assert_problem(client.post("/v1/models/nope/predict", json={"inputs": [[[0.0]]]}), 404, contains="nope")


@pytest.mark.parametrize("name", ["simple", "gru", "lstm", "stacked", "bidirectional"])
def test_predict_matches_the_numpy_reference(client: httpx.Client, name: str, rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 5, FEATURES)).astype(np.float32)
    mask = np.ones((2, 5), dtype=bool)
    mask[1, 3:] = False
    body = predict(client, name, x, mask=as_list(mask), return_state=True)

    expected = ReferenceModel(MODELS[name]()).run({"x": x}, mask=mask)
    assert close(body["outputs"], expected.outputs["y"])
    assert len(body["states"]) == len(expected.states)
    assert all(close(got, want) for got, want in zip(body["states"], expected.states, strict=True))


def test_predict_without_return_state_has_no_states(client: httpx.Client, rng: np.random.Generator) -> None:
    body = predict(client, "gru", rng.normal(size=(1, 3, FEATURES)))
    assert "states" not in body
    assert np.asarray(body["outputs"]).shape == (1, 3, 5)


def test_predict_with_initial_state_equals_the_reference(client: httpx.Client, rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 4, FEATURES)).astype(np.float32)
    h0, c0 = (rng.normal(size=(2, 4)).astype(np.float32) for _ in range(2))
    body = predict(client, "lstm", x, initial_state=[as_list(h0), as_list(c0)], return_state=True)
    expected = ReferenceModel(MODELS["lstm"]()).run({"x": x}, states=[h0, c0])
    assert close(body["outputs"], expected.outputs["y"])
    assert close(body["states"][1], expected.states[1])


def test_several_outputs_come_back_keyed_by_name_in_signature_order(client: httpx.Client) -> None:
    x = np.linspace(-1, 1, 2 * 3 * FEATURES, dtype=np.float32).reshape(2, 3, FEATURES)
    response = client.post("/v1/models/lstm_state/predict", json={"inputs": as_list(x)})
    outputs = response.json()["outputs"]
    assert list(outputs) == ["y", "h", "c"]
    assert np.asarray(outputs["y"]).shape == (2, 3, 3) and np.asarray(outputs["h"]).shape == (2, 3)
    assert close(outputs["h"], np.asarray(outputs["y"])[:, -1])


def test_inputs_may_be_keyed_by_input_name(client: httpx.Client) -> None:
    ids = [[1, 2, 3, 0], [4, 0, 5, 6]]
    by_name = predict(client, "tokens", np.asarray(ids))
    keyed = client.post("/v1/models/tokens/predict", json={"inputs": {"ids": ids}}).json()
    assert keyed["outputs"] == by_name["outputs"]
    expected = ReferenceModel(MODELS["tokens"]()).run({"ids": np.asarray(ids, dtype=np.int64)})
    assert close(keyed["outputs"], expected.outputs["y"])


def test_time_major_requests_get_time_major_outputs(client: httpx.Client, rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 5, FEATURES)).astype(np.float32)  # batch-major
    batch_major = predict(client, "gru", x)["outputs"]
    time_major = predict(client, "gru", x.swapaxes(0, 1), time_major=True)["outputs"]
    assert close(np.asarray(time_major).swapaxes(0, 1), batch_major)


def test_a_time_major_model_takes_its_own_layout_by_default(client: httpx.Client, rng: np.random.Generator) -> None:
    x_tb = rng.normal(size=(5, 2, FEATURES)).astype(np.float32)  # (T, B, F): the model's own layout
    own = predict(client, "time_major", x_tb)["outputs"]
    expected = ReferenceModel(MODELS["time_major"]()).run({"x": x_tb})
    assert close(own, expected.outputs["y"])
    batch_major = predict(client, "time_major", x_tb.swapaxes(0, 1), time_major=False)["outputs"]
    assert close(np.asarray(batch_major).swapaxes(0, 1), own)


def test_metrics_expose_requests_sessions_and_model_load_time(client: httpx.Client) -> None:
    client.get("/v1/models")
    text = client.get("/metrics").text
    assert 'rnnserve_requests_total{method="GET",route="/v1/models",status="200"}' in text
    assert "rnnserve_request_seconds_bucket" in text
    assert 'rnnserve_model_load_seconds{model="lstm"}' in text
    assert 'rnnserve_model_ready{model="broken"} 0.0' in text
    assert "rnnserve_sessions_active" in text
    assert "rnnserve_session_expirations_total" in text
