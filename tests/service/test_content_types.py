"""Issue 12, item 5: a JSON body needs `Content-Type: application/json` (text/plain or a form is what a web page may
send cross-site without asking): otherwise 415, and nothing changes. /v2 also takes a body without Content-Type,
as Triton's clients send it."""

from __future__ import annotations

import httpx
import pytest
from app_harness import ServerThread
from service_client import assert_problem

MEDIA = "https://rnnserve.dev/problems/unsupported-media-type"
STEP = b'{"inputs": [[[0.1, 0.2, 0.3]]]}'


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_v1_json_body_without_its_content_type_is_415(any_server: ServerThread, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    with httpx.Client(base_url=any_server.url, timeout=30) as client:
        sid = client.post("/v1/sessions", json={"model": "gru"}).json()["session_id"]
        before = client.get(f"/v1/sessions/{sid}").json()
        for path in (f"/v1/sessions/{sid}/step", "/v1/models/gru/predict", "/v1/sessions", f"/v1/sessions/{sid}/reset"):
            body = assert_problem(client.post(path, content=STEP, headers=headers), 415, contains="application/json")
            assert body["type"] == MEDIA
        after = client.get(f"/v1/sessions/{sid}").json()
        assert (after["step"], after["states"]) == (before["step"], before["states"])
        ok = client.post(f"/v1/sessions/{sid}/step", content=STEP, headers={"content-type": "application/json"})
        assert ok.status_code == 200
        client.delete(f"/v1/sessions/{sid}")


def test_v2_takes_no_content_type_but_refuses_text(server: ServerThread) -> None:
    body = b'{"inputs": [{"name": "x", "shape": [1, 1, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.3]}]}'
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/models/gru/infer", content=body).status_code == 200
        refused = client.post("/v2/models/gru/infer", content=body, headers={"content-type": "text/plain"})
        assert refused.status_code == 415
        assert "application/json" in refused.json()["error"]


@pytest.mark.parametrize("inputs", [[[[True, 0.2, 0.3]]], [[[1, True, 0]]], [[[True, True, False]]]])
def test_booleans_are_refused_where_numbers_are_expected(any_server: ServerThread, inputs: list[object]) -> None:
    with httpx.Client(base_url=any_server.url, timeout=30) as client:
        sid = client.post("/v1/sessions", json={"model": "gru"}).json()["session_id"]
        before = client.get(f"/v1/sessions/{sid}").json()
        for path in (f"/v1/sessions/{sid}/step", "/v1/models/gru/predict"):
            body = assert_problem(client.post(path, json={"inputs": inputs}), 400, contains="bool")
            assert body["type"].endswith("invalid-input")
        after = client.get(f"/v1/sessions/{sid}").json()
        assert (after["step"], after["states"]) == (before["step"], before["states"])
        client.delete(f"/v1/sessions/{sid}")
