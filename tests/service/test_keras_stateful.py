"""Sessions against real Keras: the stateful parity fixtures (Keras 3 `.keras`, Keras 2 `.h5`) record what a
stateful Keras model outputs batch after batch, with `reset_states()` and with states assigned in between. A
session fed the same batches, reset the same way over HTTP, must give the same outputs and states."""

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
from service_client import as_list, close, open_session
from service_server import settings_for

FIXTURES = Path(__file__).resolve().parents[1] / "parity" / "fixtures"
CASES = {  # model name in the repository -> fixture file
    "k3_stateful_gru": "k3_stateful_gru.keras",
    "k3_stateful_stack": "k3_stateful_stack.keras",
    "k2_stateful_lstm": "k2_stateful_lstm.k2.h5",
    "k2_stateful_stack": "k2_stateful_stack.k2.h5",
}


def case_entry(file: str) -> dict[str, Any]:
    cases = json.loads((FIXTURES / "cases.json").read_text())["cases"]
    return next(case for case in cases if case["file"] == file)


@pytest.fixture(scope="module")
def keras_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    models = tmp_path_factory.mktemp("keras_models")
    for name, file in CASES.items():
        shutil.copy(FIXTURES / file, models / (name + Path(file).suffix))
    server = ServerThread(settings_for(models)).start()
    yield server
    server.stop()


@pytest.mark.parametrize("name", list(CASES))
def test_a_session_replays_a_stateful_keras_model_with_its_resets(keras_server: ServerThread, name: str) -> None:
    entry = case_entry(CASES[name])
    data = np.load(FIXTURES / entry["data"])
    n_states = len(entry["stateful"]["states"])
    with httpx.Client(base_url=keras_server.url, timeout=30.0) as client:
        model = client.get(f"/v1/models/{name}").json()
        assert model["stateful"] is True and model["status"] == "ready"
        sid = open_session(client, name)["session_id"]  # the model's own fixed batch size
        for j, batch in enumerate(entry["stateful"]["batches"]):
            values = [data[f"b{j}_reset_{i}"] for i in range(n_states)] if batch["reset"] == "values" else None
            _reset(client, sid, batch["reset"], values)
            response = client.post(
                f"/v1/sessions/{sid}/step", json={"inputs": as_list(data[f"b{j}_in_x"]), "return_state": True}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert close(body["outputs"], data[f"b{j}_out_0"]), f"batch {j} outputs differ from Keras"
            for i in range(n_states):
                assert close(body["states"][i], data[f"b{j}_state_{i}"]), f"batch {j} state {i} differs from Keras"


def _reset(client: httpx.Client, sid: str, kind: str, values: list[np.ndarray] | None) -> None:
    """Keras `reset_states()` ("zeros") or states assigned ("values") before a batch; "none" leaves them."""
    if kind == "none":
        return
    body = {"states": [as_list(v) for v in values]} if kind == "values" and values is not None else None
    response = client.post(f"/v1/sessions/{sid}/reset", json=body)
    assert response.status_code == 200 and response.json()["step"] == 0, response.text
