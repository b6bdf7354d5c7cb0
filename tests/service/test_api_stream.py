"""The WebSocket stream: one reply per message in order, retries, bad messages, unknown sessions."""

from __future__ import annotations

import json

import httpx
import numpy as np
from app_harness import ServerThread
from service_client import close_code, open_session, session
from websockets.sync.client import connect


def test_each_message_gets_one_reply_with_its_step(client: httpx.Client, server: ServerThread) -> None:
    sid = open_session(client, "gru")["session_id"]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
        ws.send(json.dumps({"inputs": [[[0.1, 0.2, 0.3]]], "seq": 0}))
        first = json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"inputs": [[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]], "seq": 1, "return_state": True}))
        second = json.loads(ws.recv(timeout=30))
    assert first["step"] == 1 and np.shape(first["outputs"]) == (1, 1, 5)
    assert second["step"] == 3 and np.shape(second["states"]) == (1, 1, 5)
    assert session(client, sid)["step"] == 3


def test_a_bad_message_gets_a_problem_reply_and_the_stream_goes_on(client: httpx.Client, server: ServerThread) -> None:
    sid = open_session(client, "lstm")["session_id"]
    good = {"inputs": [[[0.1, 0.2, 0.3]]]}
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
        ws.send(json.dumps(good))
        assert json.loads(ws.recv(timeout=30))["step"] == 1
        before = session(client, sid)
        for bad in ("not json", json.dumps({"inputs": [[[0.1, 0.2]]]}), json.dumps({"inputs": [[["a", 1, 2]]]})):
            ws.send(bad)
            problem = json.loads(ws.recv(timeout=30))
            assert problem["status"] == 400 and problem["title"] and problem["type"] and problem["detail"]
        ws.send(json.dumps({**good, "seq": 7}))
        assert json.loads(ws.recv(timeout=30))["status"] == 409
        after = session(client, sid)
        assert (after["step"], after["states"]) == (before["step"], before["states"])
        ws.send(json.dumps(good))
        assert json.loads(ws.recv(timeout=30))["step"] == 2


def test_a_retry_over_the_stream_is_answered_from_the_cache(client: httpx.Client, server: ServerThread) -> None:
    sid = open_session(client, "simple")["session_id"]
    message = json.dumps({"inputs": [[[0.5, 0.2, 0.3]]], "seq": 0})
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
        ws.send(message)
        first = ws.recv(timeout=30)
        ws.send(message)
        assert ws.recv(timeout=30) == first
    assert session(client, sid)["step"] == 1


def test_an_unknown_session_closes_the_stream_with_4404(server: ServerThread) -> None:
    with connect(f"{server.ws_url}/v1/sessions/nope/stream") as ws:
        problem = json.loads(ws.recv(timeout=30))
        assert problem["status"] == 404
        assert close_code(ws) == 4404


def test_a_binary_frame_closes_the_stream_with_1003(client: httpx.Client, server: ServerThread) -> None:
    sid = open_session(client, "simple")["session_id"]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
        ws.send(b"\x00\x01")
        assert close_code(ws) == 1003
    assert session(client, sid)["step"] == 0
