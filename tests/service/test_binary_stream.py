"""Binary frames on WS /v1/sessions/{id}/stream?shape=B,T,F: each frame is one chunk's raw input bytes (T from its
length), each reply the step as 8 little-endian bytes then the outputs' raw float32 bytes. Errors come back as
problem+json text messages and leave the session unchanged."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import close, close_code, open_session, predict, session
from service_models import FEATURES
from websockets.sync.client import connect


def decode(reply: bytes | str, *shapes: tuple[int, ...]) -> tuple[int, list[np.ndarray]]:
    assert isinstance(reply, bytes), reply
    step = int.from_bytes(reply[:8], "little")
    arrays, offset = [], 8
    for shape in shapes:
        count = int(np.prod(shape))
        arrays.append(np.frombuffer(reply, "<f4", count, offset).reshape(shape))
        offset += 4 * count
    assert offset == len(reply)
    return step, arrays


def test_frames_of_any_length_equal_one_predict(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(1, 6, FEATURES)).astype(np.float32)
    whole = predict(client, "gru", x, return_state=True)
    sid = open_session(client, "gru")["session_id"]
    outputs, steps = [], []
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream?shape=1,1,{FEATURES}") as ws:
        for start, stop in ((0, 1), (1, 3), (3, 6)):
            ws.send(np.ascontiguousarray(x[:, start:stop]).tobytes())
            step, (y,) = decode(ws.recv(timeout=30), (1, stop - start, 5))
            steps.append(step)
            outputs.append(y)
    assert steps == [1, 3, 6]
    assert close(np.concatenate(outputs, axis=1), whole["outputs"])
    assert close(session(client, sid)["states"][0], whole["states"][0])


def test_return_state_at_connect_appends_the_states(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(2, 2, FEATURES)).astype(np.float32)
    whole = predict(client, "lstm", x, return_state=True)
    sid = open_session(client, "lstm", batch_size=2)["session_id"]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream?shape=2,1,{FEATURES}&return_state=true") as ws:
        ws.send(x.tobytes())
        step, (y, h, c) = decode(ws.recv(timeout=30), (2, 2, 4), (2, 4), (2, 4))
    assert step == 2 and close(y, whole["outputs"])
    assert close(h, whole["states"][0]) and close(c, whole["states"][1])


def test_a_bad_frame_gets_a_problem_and_the_stream_goes_on(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    sid = open_session(client, "simple")["session_id"]
    good = rng.normal(size=(1, 1, FEATURES)).astype(np.float32).tobytes()
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream?shape=1,1,{FEATURES}") as ws:
        ws.send(good)
        assert decode(ws.recv(timeout=30), (1, 1, 4))[0] == 1
        before = session(client, sid)
        for bad, detail in ((good[:-4], "whole number of timesteps"), (b"", "no timesteps"),
                            (np.full((1, 1, FEATURES), np.nan, np.float32).tobytes(), "NaN")):  # fmt: skip
            ws.send(bad)
            problem = json.loads(ws.recv(timeout=30))
            assert problem["status"] == 400 and detail in problem["detail"]
        after = session(client, sid)
        assert (after["step"], after["states"]) == (before["step"], before["states"])
        ws.send(good)
        assert decode(ws.recv(timeout=30), (1, 1, 4))[0] == 2


def test_text_and_binary_messages_mix_on_one_stream(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(1, 2, FEATURES)).astype(np.float32)
    whole = predict(client, "simple", x)
    sid = open_session(client, "simple")["session_id"]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream?shape=1,1,{FEATURES}") as ws:
        ws.send(json.dumps({"inputs": x[:, :1].tolist()}))
        first = json.loads(ws.recv(timeout=30))
        ws.send(np.ascontiguousarray(x[:, 1:]).tobytes())
        step, (second,) = decode(ws.recv(timeout=30), (1, 1, 4))
    assert (first["step"], step) == (1, 2)
    assert close(np.concatenate([np.asarray(first["outputs"]), second], axis=1), whole["outputs"])


def test_token_id_frames_are_int64(client: httpx.Client, server: ServerThread) -> None:
    ids = np.array([[1, 5, 0, 9]], dtype="<i8")
    whole = predict(client, "tokens", ids)
    sid = open_session(client, "tokens")["session_id"]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream?shape=1,1") as ws:
        ws.send(ids.tobytes())
        step, (y,) = decode(ws.recv(timeout=30), (1, 3))
    assert step == 4 and close(y, whole["outputs"])


@pytest.mark.parametrize("query", ["shape=1,x,3", "shape=3", "shape=1,1,3&return_state=perhaps"])
def test_a_bad_shape_at_connect_gets_a_problem_and_closes_with_1003(
    client: httpx.Client, server: ServerThread, query: str
) -> None:
    sid = open_session(client, "simple")["session_id"]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream?{query}") as ws:
        problem = json.loads(ws.recv(timeout=30))
        assert problem["status"] == 400
        assert close_code(ws) == 1003


def test_an_unknown_session_closes_a_binary_stream_with_4404(server: ServerThread) -> None:
    with connect(f"{server.ws_url}/v1/sessions/nope/stream?shape=1,1,3") as ws:
        assert json.loads(ws.recv(timeout=30))["status"] == 404
        assert close_code(ws) == 4404
