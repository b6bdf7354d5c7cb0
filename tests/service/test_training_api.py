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
DROPOUT_CASES = cases_of("dropout")


@pytest.fixture(scope="module")
def training_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    models = tmp_path_factory.mktemp("training_models")
    for case in RESET_CASES + PENALTY_CASES + DROPOUT_CASES:
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


def _predict(http: httpx.Client, name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"/v1/models/{name}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_predict_with_dropout_gives_seeded_samples_or_their_mean_and_std(http: httpx.Client) -> None:
    case = next(c for c in DROPOUT_CASES if c["id"] == "k3_mc_dropout_stack")
    x = as_list(arrays(case)["in_x"])  # (2, 5, 3) -> (2, 2)
    dropout = {"samples": 64, "seed": 5}
    samples = _predict(http, case["id"], {"inputs": x, "dropout": dropout, "return_state": True})
    assert samples["dropout"] == {"samples": 64, "seed": 5, "reduce": "none"}
    values = np.asarray(samples["outputs"])
    assert values.shape == (64, 2, 2) and np.asarray(samples["states"][0]).shape == (64, 2, 4)
    assert not np.allclose(values[0], values[1])
    assert _predict(http, case["id"], {"inputs": x, "dropout": dropout, "return_state": True}) == samples
    reduced = _predict(http, case["id"], {"inputs": x, "dropout": {**dropout, "reduce": "mean_std"}})
    assert close(reduced["outputs"], values.mean(axis=0))
    assert close(reduced["dropout"]["outputs_std"], values.std(axis=0))
    unseeded = _predict(http, case["id"], {"inputs": x, "dropout": {"samples": 2}})
    assert isinstance(unseeded["dropout"]["seed"], int)  # drawn, and returned so the call can be repeated


def _dropout_graphs(server: ServerThread, name: str) -> dict[Any, Any]:
    """The Monte-Carlo dropout graphs the served model's runner has built (`OrtModel`)."""
    runner = server.app.serving.service.repository.get(name).runner  # type: ignore[attr-defined]
    return runner._dropout_graphs  # type: ignore[no-any-return]  # noqa: SLF001


@pytest.mark.parametrize("case", DROPOUT_CASES, ids=[c["id"] for c in DROPOUT_CASES])
def test_predict_with_dropout_runs_on_onnxruntime_and_equals_the_reference(
    training_server: ServerThread, http: httpx.Client, case: dict[str, Any]
) -> None:
    from rnnserve.importers import load_spec
    from rnnserve.layers.model import ReferenceModel
    from rnnserve.mc_dropout import DropoutRequest, run_samples

    x = arrays(case)["in_x"]
    body = _predict(
        http, case["id"], {"inputs": as_list(x), "dropout": {"samples": 32, "seed": 9}, "return_state": True}
    )
    assert _dropout_graphs(training_server, case["id"])  # built by this request, or an earlier one
    reference = run_samples(
        ReferenceModel(load_spec(TRAINING / case["file"], name=case["id"])), {"x": x}, None, None, DropoutRequest(32, 9)
    )
    outputs = body["outputs"] if isinstance(body["outputs"], dict) else {"": body["outputs"]}  # one output: bare
    expected = reference.outputs if len(reference.outputs) > 1 else {"": next(iter(reference.outputs.values()))}
    assert outputs.keys() == expected.keys()
    for name, value in expected.items():
        assert close(outputs[name], value), name
    for got, want in zip(body["states"], reference.states, strict=True):
        assert close(got, want)


def test_a_model_without_dropout_gives_identical_samples_over_http(http: httpx.Client) -> None:
    case = RESET_CASES[0]
    x = as_list(arrays(case)["b0_in_x"])
    plain = _predict(http, case["id"], {"inputs": x})
    samples = np.asarray(_predict(http, case["id"], {"inputs": x, "dropout": {"samples": 4, "seed": 1}})["outputs"])
    assert all(close(samples[n], plain["outputs"]) for n in range(4))


def test_a_session_step_with_dropout_is_a_what_if(http: httpx.Client) -> None:
    case = next(c for c in DROPOUT_CASES if c["id"] == "k3_mc_dropout_gates")
    x = arrays(case)["in_x"]  # (2, 6, 2)
    sid = open_session(http, case["id"], batch_size=2)["session_id"]
    first = http.post(f"/v1/sessions/{sid}/step", json={"inputs": as_list(x[:, :3]), "return_state": True}).json()
    what_if = http.post(
        f"/v1/sessions/{sid}/step",
        json={"inputs": as_list(x[:, 3:]), "seq": 3, "dropout": {"samples": 8, "seed": 2}, "return_state": True},
    )
    assert what_if.status_code == 200, what_if.text
    body = what_if.json()
    assert body["step"] == 3 and np.asarray(body["outputs"]).shape == (8, 2, 2)
    from rnnserve.importers import load_spec
    from rnnserve.layers.model import ReferenceModel
    from rnnserve.mc_dropout import DropoutRequest, run_samples

    reference = run_samples(
        ReferenceModel(load_spec(TRAINING / case["file"], name=case["id"])),
        {"x": x[:, 3:]},
        [np.asarray(s, np.float32) for s in first["states"]],
        None,
        DropoutRequest(8, 2),
    )  # the same samples from the session's states, on the numpy reference
    assert close(body["outputs"], next(iter(reference.outputs.values())))
    assert all(close(a, b) for a, b in zip(body["states"], reference.states, strict=True))
    info = http.get(f"/v1/sessions/{sid}").json()
    assert info["step"] == 3 and close(info["states"][0], first["states"][0])  # nothing committed
    rest = http.post(f"/v1/sessions/{sid}/step", json={"inputs": as_list(x[:, 3:]), "seq": 3}).json()
    whole = _predict(http, case["id"], {"inputs": as_list(x)})
    assert rest["step"] == 6 and close(rest["outputs"], whole["outputs"])
    stale = http.post(
        f"/v1/sessions/{sid}/step", json={"inputs": as_list(x[:, 3:]), "seq": 3, "dropout": {"samples": 2}}
    )
    assert stale.status_code == 409


@pytest.mark.parametrize(
    "dropout",
    [{"samples": 0}, {"samples": 1001}, {"samples": 2, "seed": -1}, {"samples": 2, "reduce": "mean"}, {"n": 2}, 3],
)
def test_a_bad_dropout_option_is_refused(http: httpx.Client, dropout: Any) -> None:
    case = DROPOUT_CASES[0]
    response = http.post(
        f"/v1/models/{case['id']}/predict", json={"inputs": as_list(arrays(case)["in_x"]), "dropout": dropout}
    )
    assert response.status_code == 400 and "dropout" in response.json()["detail"], response.text
