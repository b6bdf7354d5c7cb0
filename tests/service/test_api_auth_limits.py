"""Optional API-key auth, the configurable body limit, and loading: /readyz is 503 until the models are loaded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from app_harness import ServerThread
from service_client import assert_problem
from service_server import settings_for, write_models
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from rnnserve.runtime import repository as repository_module

KEY = "s3cret-key"


def test_with_an_api_key_v1_needs_the_bearer_token(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(api_key=KEY)
    with httpx.Client(base_url=server.url) as client:
        missing = assert_problem(client.get("/v1/models"), 401, contains="Bearer")
        assert client.get("/v1/models").headers["www-authenticate"] == "Bearer"
        assert missing["title"] == "Unauthorized"
        assert_problem(client.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        assert_problem(client.post("/v1/sessions", json={"model": "gru"}), 401)

        auth = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/v1/models", headers=auth).status_code == 200
        sid = client.post("/v1/sessions", json={"model": "gru"}, headers=auth).json()["session_id"]
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(open_path).status_code == 200

    with pytest.raises(InvalidStatus):  # refused before the handshake completes
        connect(f"{server.ws_url}/v1/sessions/{sid}/stream")
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream", additional_headers=auth) as ws:
        ws.send('{"inputs": [[[0.1, 0.2, 0.3]]]}')
        assert '"step":1' in ws.recv(timeout=30)


def test_the_body_limit_is_configurable(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_body_bytes=2048)
    body = {"inputs": [[[0.25, 0.5, 0.75]] * 40]}  # about 700 bytes
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/v1/models/gru/predict", json=body).status_code == 200
        too_big = {"inputs": [[[0.25, 0.5, 0.75]] * 200]}
        assert_problem(client.post("/v1/models/gru/predict", json=too_big), 413, contains="2048")


def test_readyz_is_503_until_every_model_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = write_models(tmp_path / "models", ["simple"])
    release = threading.Event()
    real_load_runner = repository_module.load_runner

    def slow_load_runner(*args, **kwargs):  # holds the load until the test has looked at /readyz
        release.wait(timeout=30)
        return real_load_runner(*args, **kwargs)

    monkeypatch.setattr(repository_module, "load_runner", slow_load_runner)
    server = ServerThread(settings_for(models)).start(wait_ready=False)
    try:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/healthz").status_code == 200
            loading = client.get("/readyz")
            assert loading.status_code == 503 and loading.json()["status"] == "not ready"
            assert_problem(client.post("/v1/models/simple/predict", json={"inputs": [[[0, 0, 0]]]}), 503)
            release.set()
            server.wait_ready()
            assert client.get("/readyz").json()["models"]["simple"] == "ready"
    finally:
        release.set()
        server.stop()
