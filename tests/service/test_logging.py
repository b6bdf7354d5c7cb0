"""The server's logs: text and JSON lines, session ids as tags, the access log's modes and its summary line."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time

from rnnserve.cli import uvicorn_options
from rnnserve.logging_setup import (
    AccessSummary,
    BackgroundHandler,
    JsonFormatter,
    TextFormatter,
    access_log_on,
    redact,
    session_tag,
    uvicorn_log_config,
)
from rnnserve.metrics import Metrics
from rnnserve.settings import Settings

SESSION = "k3Jd9_x-AbCdEfGhIjKlMnOp"
TAG = hashlib.sha256(SESSION.encode()).hexdigest()[:8]


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_a_session_id_shows_as_its_tag() -> None:
    assert session_tag(SESSION) == TAG
    assert redact(f"POST /v1/sessions/{SESSION}/step") == f"POST /v1/sessions/#{TAG}/step"
    assert (
        redact(f"WebSocket /v1/sessions/{SESSION}/stream?shape=1,1,3")
        == f"WebSocket /v1/sessions/#{TAG}/stream?shape=1,1,3"
    )
    assert redact(f"no session '{SESSION}' (expired)") == f"no session #{TAG} (expired)"
    assert redact("GET /v1/models 200") == "GET /v1/models 200"


def test_text_lines_redact_uvicorn_access_records() -> None:
    line = TextFormatter().format(
        record(
            "uvicorn.access",
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5",
            "POST",
            f"/v1/sessions/{SESSION}/step",
            "1.1",
            200,
        )  # fmt: skip
    )
    assert SESSION not in line and f"#{TAG}" in line and "INFO uvicorn.access" in line


def test_json_lines_carry_fields() -> None:
    access = record("uvicorn.access", '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "POST", f"/v1/sessions/{SESSION}/step",
                    "1.1", 200)  # fmt: skip
    body = json.loads(JsonFormatter().format(access))
    assert body["level"] == "info" and body["logger"] == "uvicorn.access"
    assert body["method"] == "POST" and body["status"] == 200 and body["path"] == f"/v1/sessions/#{TAG}/step"
    assert SESSION not in json.dumps(body) and body["time"].endswith("+00:00")
    plain = record("rnnserve.app", "failed for session '%s'", SESSION)
    plain.fields = {"route": "/x"}  # type: ignore[attr-defined]
    body = json.loads(JsonFormatter().format(plain))
    assert body["message"] == f"failed for session #{TAG}" and body["route"] == "/x"


def test_the_access_log_is_a_summary_by_default() -> None:
    defaults = Settings()
    assert defaults.access_log == "summary" and defaults.log_level == "info"
    assert uvicorn_options(defaults)["access_log"] is False
    assert uvicorn_options(Settings(access_log="full"))["access_log"] is True
    assert not access_log_on(Settings(access_log="full", log_level="warning"))
    config = uvicorn_options(Settings(log_format="json"))["log_config"]
    assert config["formatters"]["rnnserve"]["()"].endswith("JsonFormatter")
    assert "root" not in uvicorn_log_config(defaults)  # the root logger is the CLI's to set


def test_background_handler_writes_every_record_off_the_caller() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream)
    handler.setFormatter(TextFormatter())
    for i in range(500):
        handler.emit(record("uvicorn.access", "line %d of session '%s'", i, SESSION))
    handler.flush()
    deadline = time.monotonic() + 2
    while stream.getvalue().count("\n") < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 500 and lines[-1].endswith(f"line 499 of session #{TAG}")


def test_summary_lines_count_each_interval() -> None:
    metrics = Metrics()
    route = "/v1/sessions/{session_id}/step"
    summary = AccessSummary(metrics.registry, 60.0, logging.getLogger("test.access"))
    summary.counts, summary.buckets = summary._read()
    for _ in range(97):
        metrics.observe(route, "POST", 200, 0.002)
    metrics.observe(route, "POST", 409, 0.002)
    metrics.observe(route, "POST", 200, 0.2)
    metrics.observe(route, "POST", 200, 0.2)
    metrics.observe("/v1/models", "GET", 200, 0.0001)
    lines = summary.emit()
    assert len(lines) == 2
    step = next(line for line in lines if route in line)
    assert "100 requests" in step and "200:99 409:1" in step
    assert "p50 <= 2.5 ms" in step and "p99 <= 250 ms" in step
    assert summary.emit() == []  # nothing new since
    metrics.observe(route, "POST", 200, 0.2)
    (line,) = summary.emit()
    assert "1 requests" in line and "p50 <= 250 ms" in line
