"""Issue 12, item 1: a call's work (rows x timesteps) and its reply's size are capped before it runs (413 naming the
limit, its setting and the figure the call would have needed), and a large predict does not stall other sessions'
steps (it runs on threads of its own, outside the batcher)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import assert_problem

from rnnserve.settings import Settings, bundled_models_dir

WORK = "https://rnnserve.dev/problems/work-too-large"
REPLY = "https://rnnserve.dev/problems/reply-too-large"


def _inputs(batch: int, timesteps: int) -> list[list[list[float]]]:
    return np.full((batch, timesteps, 3), 0.25).tolist()


def test_work_past_max_work_is_413_naming_the_limit_and_the_figure(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_work=100)
    with httpx.Client(base_url=server.url) as client:
        body = assert_problem(
            client.post("/v1/models/gru/predict", json={"inputs": _inputs(4, 26)}), 413, contains="max_work"
        )
        assert body["type"] == WORK
        assert (body["limit"], body["needed"], body["setting"]) == (100, 104, "max_work")
        assert client.post("/v1/models/gru/predict", json={"inputs": _inputs(4, 25)}).status_code == 200

        sid = client.post("/v1/sessions", json={"model": "gru", "batch_size": 4}).json()["session_id"]
        before = client.get(f"/v1/sessions/{sid}").json()
        refused = client.post(f"/v1/sessions/{sid}/step", json={"inputs": _inputs(4, 26), "seq": 0})
        assert assert_problem(refused, 413)["type"] == WORK
        assert client.get(f"/v1/sessions/{sid}").json()["states"] == before["states"]
        assert client.get(f"/v1/sessions/{sid}").json()["step"] == 0
        # /v2 infer goes through the same data plane
        v2 = client.post(
            "/v2/models/gru/infer",
            json={"inputs": [{"name": "x", "shape": [4, 26, 3], "datatype": "FP32", "data": [0.1] * (4 * 26 * 3)}]},
        )
        assert v2.status_code == 413, v2.text


def test_a_reply_past_max_reply_bytes_is_413_before_anything_runs(make_server: Callable[..., ServerThread]) -> None:
    # gru answers 5 float32 values a timestep: 16 bytes each in JSON, 4 as raw bytes
    server = make_server(max_reply_bytes=4096)
    with httpx.Client(base_url=server.url) as client:
        body = assert_problem(
            client.post("/v1/models/gru/predict", json={"inputs": _inputs(1, 60)}), 413, contains="max_reply_bytes"
        )
        assert body["type"] == REPLY
        assert (body["limit"], body["needed"], body["setting"]) == (4096, 60 * 5 * 16, "max_reply_bytes")
        raw = np.full((1, 60, 3), 0.25, dtype="<f4").tobytes()
        binary = client.post(
            "/v1/models/gru/predict",
            content=raw,
            headers={"content-type": "application/octet-stream", "x-shape": "1,60,3"},
        )
        assert binary.status_code == 200, binary.text  # 1200 bytes as raw float32
        assert len(binary.content) == 60 * 5 * 4


def test_settings_defaults_bound_one_call() -> None:
    settings = Settings()
    assert settings.max_work == 100_000
    assert settings.max_reply_bytes == 32 * 2**20


@pytest.mark.slow
def test_a_large_predict_does_not_stall_other_sessions_steps() -> None:
    """chargru (bundled), one predict of 4 x 100,000 tokens (about 2 s of model time) while another session steps
    one token at a time: every step answers in well under a second."""
    settings = Settings(models=bundled_models_dir(), max_work=400_000, max_reply_bytes=2**30, executor_threads=2)
    server = ServerThread(settings).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            sid = client.post("/v1/sessions", json={"model": "chargru"}).json()["session_id"]
            tokens = np.random.default_rng(0).integers(1, 39, (4, 100_000), dtype="<i8")
            done = threading.Event()
            result: dict[str, object] = {}

            def large() -> None:
                with httpx.Client(base_url=server.url, timeout=120) as other:
                    started = time.perf_counter()
                    reply = other.post(
                        "/v1/models/chargru/predict",
                        content=tokens.tobytes(),
                        headers={"content-type": "application/octet-stream", "x-shape": "4,100000"},
                    )
                    result["status"], result["seconds"] = reply.status_code, time.perf_counter() - started
                done.set()

            thread = threading.Thread(target=large)
            thread.start()
            latencies = []
            while not done.is_set():
                started = time.perf_counter()
                step = client.post(f"/v1/sessions/{sid}/step", json={"inputs": [[5]]})
                latencies.append(time.perf_counter() - started)
                assert step.status_code == 200, step.text
                time.sleep(0.01)
            thread.join()
            assert result["status"] == 200
            assert float(result["seconds"]) > 0.5, result  # type: ignore[arg-type]  # it did overlap the steps
            assert len(latencies) > 5
            assert max(latencies) < 1.0, (max(latencies), result)
    finally:
        server.stop()
