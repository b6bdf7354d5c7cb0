"""Issue 12, item 5: /readyz is 503 while a model failed (unless serve_partial), and shows why only to a request with
a key; entries that share a name are refused alone (the rest are served); a link out of the model folder is not
followed unless follow_model_links_out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_harness import ServerThread
from service_client import assert_problem
from service_server import settings_for, write_models

KEY = "k-1"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = write_models(tmp_path / "models", ["gru", "simple"])  # and the broken entry
    (root / "twin.keras").write_bytes(b"one")
    (root / "twin.h5").write_bytes(b"two")
    (root / "passwd.h5").symlink_to("/etc/passwd")
    return root


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerThread] = []

    def run(root: Path, **overrides: Any) -> ServerThread:
        settings = settings_for(root, **{"serve_partial": False, **overrides})
        server = ServerThread(settings).start(wait_ready=False)
        started.append(server)
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.url) as client:
            while "loading" in client.get("/readyz").json()["models"].values():
                assert time.monotonic() < deadline
                time.sleep(0.05)
        return server

    yield run
    for server in started:
        server.stop()


def test_readyz_is_503_while_a_model_failed_and_tells_why_only_with_a_key(start: Any, repository: Path) -> None:
    server = start(repository, api_key=KEY)
    with httpx.Client(base_url=server.url) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "1"
        body = ready.json()
        assert body["models"]["broken"] == "failed" and body["models"]["gru"] == "ready"
        assert "failed" not in body and "/etc" not in ready.text and "passwd:" not in ready.text
        assert str(repository) not in ready.text
        keyed = client.get("/readyz", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert "rename or remove" in keyed["failed"]["twin"]
        assert "leads out of the model folder" in keyed["failed"]["passwd"]
        # the rest is served
        auth = {"Authorization": f"Bearer {KEY}"}
        assert client.post("/v1/models/gru/predict", json={"inputs": [[[0.1, 0.2, 0.3]]]}, headers=auth).is_success
        for name in ("twin", "passwd"):
            refused = client.post(f"/v1/models/{name}/predict", json={"inputs": [[[0.1]]]}, headers=auth)
            assert assert_problem(refused, 503)["type"].endswith("model-not-ready")


def test_serve_partial_reports_ready(start: Any, repository: Path) -> None:
    server = start(repository, serve_partial=True)
    with httpx.Client(base_url=server.url) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert "failed" not in ready.json()  # a server without keys never shows errors


def test_a_link_out_is_followed_only_when_allowed(start: Any, repository: Path, tmp_path: Path) -> None:
    outside = write_models(tmp_path / "elsewhere", ["lstm"])
    (repository / "linked").symlink_to(outside / "lstm")
    server = start(repository, serve_partial=True, follow_model_links_out=True)
    with httpx.Client(base_url=server.url) as client:
        models = client.get("/readyz").json()["models"]
        assert models["linked"] == "ready"
        assert models["passwd"] == "failed"  # followed, and not a model file
        assert models["twin"] == "failed"
