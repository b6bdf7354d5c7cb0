"""Settings from flags and RNNSERVE_* variables, and the `rnnserve` command line (serve, export, inspect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from app_harness import free_port
from pydantic import ValidationError
from service_client import close
from service_models import MODELS
from service_server import write_models

import service
from service.cli import main
from service.export.package import read_package, write_package
from service.runtime.ort_model import OrtModel
from service.settings import Settings

KERAS_FILE = Path(__file__).resolve().parents[1] / "parity" / "fixtures" / "k3_lstm_return_state.keras"


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RNNSERVE_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert (settings.host, settings.port, settings.store_url) == ("127.0.0.1", 8000, "memory://")
    assert settings.models == Path(service.__file__).resolve().parent.parent / "models"
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert settings.api_key is None


def test_environment_variables_and_then_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNSERVE_PORT", "9100")
    monkeypatch.setenv("RNNSERVE_MAX_SESSIONS", "7")
    monkeypatch.setenv("RNNSERVE_API_KEY", "")  # an empty key (as a blank Secret gives) means no auth
    settings = Settings(port=9200)
    assert (settings.port, settings.max_sessions, settings.api_key) == (9200, 7, None)


@pytest.mark.parametrize(
    "bad",
    [{"port": 70000}, {"store_url": "mysql://x"}, {"default_ttl_s": 100.0, "max_ttl_s": 10.0}, {"max_sessions": 0}],
)
def test_invalid_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_rnnserve_serve_runs_a_server_from_flags_and_environment(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models", ["gru"])
    port = free_port()
    env = {**os.environ, "RNNSERVE_MAX_SESSIONS": "1"}
    command = [sys.executable, "-m", "service", "serve", "--models", str(models), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
            assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["broken", "gru"]
            assert client.post("/v1/sessions", json={"model": "gru"}).status_code == 201
            assert client.post("/v1/sessions", json={"model": "gru"}).status_code == 429  # RNNSERVE_MAX_SESSIONS
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Application shutdown complete" in output  # SIGTERM: a graceful stop (uvicorn then re-raises it)
    assert "model 'broken'" in output  # the failed load is logged


def test_serve_refuses_a_missing_folder_and_workers_without_a_shared_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--models", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["serve", "--models", str(tmp_path), "--workers", "2"]) == 2
    assert "shared session store" in capsys.readouterr().err


def test_export_writes_a_package_that_computes_what_keras_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not KERAS_FILE.is_file():
        pytest.skip(f"{KERAS_FILE.name} is not there (the parity fixtures are being regenerated)")
    out = tmp_path / "lstm_pkg"
    assert main(["export", str(KERAS_FILE), "--out", str(out), "--no-unroll"]) == 0
    assert "wrote" in capsys.readouterr().out
    package = read_package(out)
    assert package.manifest["graph_form"] == "scan"

    keras = np.load(KERAS_FILE.with_suffix(".npz"))
    runner = OrtModel(package.spec, model_path=package.model_path, signature=package.signature)
    result = runner.run({"x": keras["in_x"]})
    for k, name in enumerate(o.name for o in package.signature.outputs):
        assert close(result.outputs[name], keras[f"out_{k}"])


def test_inspect_prints_the_signature_of_a_package_and_a_keras_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_package(MODELS["stacked"](), tmp_path / "stacked")
    assert main(["inspect", str(tmp_path / "stacked")]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["kind"] == "package"
    assert [s["name"] for s in described["signature"]["states"]] == ["lstm/h", "lstm/c", "gru/h"]
    assert described["manifest"]["signature"] == described["signature"]

    if KERAS_FILE.is_file():
        assert main(["inspect", str(KERAS_FILE)]) == 0
        keras = json.loads(capsys.readouterr().out)
        assert keras["kind"] == "keras" and keras["signature"]["states"]


def test_inspect_of_a_bad_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"nope")
    assert main(["inspect", str(bad)]) == 1
    assert "ModelFileError" in capsys.readouterr().err
