"""The training-time fixtures of real Keras (`tests/parity/fixtures/training/`) through the HTTP API: a session
replays a stateful stack with `model.get_layer(name).reset_states()` between batches (Keras 3 and tf_keras 2);
GET /v1/models/{m} reports the weight penalties and constraints; predict with `return_losses` gives
`model.losses` after `model(x)`."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import as_list, close, open_session
from service_server import settings_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
from training_fixtures import TRAINING, arrays, cases_of, model_name, reset_values  # noqa: E402

RESET_CASES = cases_of("reset")
PENALTY_CASES = cases_of("penalties")


@pytest.fixture(scope="module")
def training_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    models = tmp_path_factory.mktemp("training_models")
    for case in RESET_CASES + PENALTY_CASES:
        suffix = ".h5" if case["file"].endswith(".h5") else ".keras"
        shutil.copy(TRAINING / case["file"], models / (model_name(case) + suffix))
    server = ServerThread(settings_for(models)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(training_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=training_server.url, timeout=30.0) as client:
        yield client


@pytest.mark.parametrize("case", RESET_CASES, ids=[c["id"] for c in RESET_CASES])
def test_a_session_replays_per_layer_resets_of_keras(http: httpx.Client, case: dict[str, Any]) -> None:
    name = model_name(case)
    data = arrays(case)
    model = http.get(f"/v1/models/{name}").json()
    assert model["status"] == "ready", model
    assert [s["name"] for s in model["states"]] == case["states"]
    assert all(s["name"].startswith(s["layer"] + "/") for s in model["states"])
    sid = open_session(http, name)["session_id"]
    for j, step in enumerate(case["batches"]):
        if step["reset"] != "none":
            body: dict[str, Any] = {"layers": [step["layer"]]}
            values = reset_values(case, data, j)
            if values is not None:
                body["states"] = [as_list(v) for v in values]
            response = http.post(f"/v1/sessions/{sid}/reset", json=body)
            assert response.status_code == 200, response.text
        response = http.post(
            f"/v1/sessions/{sid}/step", json={"inputs": as_list(data[f"b{j}_in_x"]), "return_state": True}
        )
        assert response.status_code == 200, response.text
        got = response.json()
        assert close(got["outputs"], data[f"b{j}_out_0"]), f"batch {j} outputs differ from Keras"
        for i, state in enumerate(got["states"]):
            assert close(state, data[f"b{j}_state_{i}"]), f"batch {j} state {case['states'][i]} differs from Keras"


@pytest.mark.parametrize("case", PENALTY_CASES, ids=[c["id"] for c in PENALTY_CASES])
def test_the_model_reports_its_penalties_and_constraints(http: httpx.Client, case: dict[str, Any]) -> None:
    model = http.get(f"/v1/models/{model_name(case)}").json()
    assert model["penalties"]["total"] == pytest.approx(case["weights_total"], rel=1e-5)
    assert {e["layer"]: e["total"] for e in model["penalties"]["layers"]} == pytest.approx(
        case["weights_by_layer"], rel=1e-5
    )
    for entry in model["penalties"]["layers"]:
        assert entry["total"] == pytest.approx(sum(w["penalty"] for w in entry["weights"]))
        assert all(w["regularizer"] in {"L1", "L2", "L1L2", "OrthogonalRegularizer"} for w in entry["weights"])
    judged = {(e["layer"], e["weight"]): e["satisfied"] for e in model["constraints"]}
    assert judged == {(e["layer"], e["weight"]): e["keras_satisfied"] for e in case["constraints"]}


@pytest.mark.parametrize("case", PENALTY_CASES, ids=[c["id"] for c in PENALTY_CASES])
def test_predict_returns_the_losses_of_the_call(http: httpx.Client, case: dict[str, Any]) -> None:
    data = arrays(case)
    name = model_name(case)
    response = http.post(f"/v1/models/{name}/predict", json={"inputs": as_list(data["in_x"]), "return_losses": True})
    assert response.status_code == 200, response.text
    body = response.json()
    outputs = body["outputs"]
    first = outputs if not isinstance(outputs, dict) else next(iter(outputs.values()))
    assert close(first, data["out_0"])
    losses = body["losses"]
    assert losses["total"] == pytest.approx(case["total"], rel=1e-5)
    assert losses["weights"] == pytest.approx(case["weights_total"], rel=1e-5)
    by_layer = {e["layer"]: e.get("weights", 0.0) + e.get("activity", 0.0) for e in losses["layers"]}
    assert by_layer == pytest.approx(case["by_layer"], rel=1e-5)
    plain = http.post(f"/v1/models/{name}/predict", json={"inputs": as_list(data["in_x"])}).json()
    assert "losses" not in plain and np.allclose(np.asarray(first), np.asarray(
        plain["outputs"] if not isinstance(plain["outputs"], dict) else next(iter(plain["outputs"].values()))
    ))  # fmt: skip
