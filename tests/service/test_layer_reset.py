"""Per-layer reset (Keras `model.layers[i].reset_states()`): over HTTP, over the stream, in the client; the
signature names each state's layer; an unknown layer changes nothing."""

from __future__ import annotations

import json

import httpx
import numpy as np
from app_harness import ServerThread
from service_client import PROBLEM_JSON, as_list, close, open_session, session, step
from websockets.sync.client import connect

from rnnserve.client import AsyncClient, Client


def test_each_state_names_its_layer(client: httpx.Client) -> None:
    states = client.get("/v1/models/stacked").json()["states"]
    assert [(s["name"], s["layer"]) for s in states] == [("lstm/h", "lstm"), ("lstm/c", "lstm"), ("gru/h", "gru")]


def _advanced(client: httpx.Client, rng: np.random.Generator) -> tuple[str, list[np.ndarray]]:
    sid = open_session(client, "stacked")["session_id"]
    body = step(client, sid, rng.normal(size=(1, 4, 3)), return_state=True)
    return sid, [np.asarray(s) for s in body["states"]]


def test_reset_of_one_layer_zeroes_only_its_states(client: httpx.Client, rng: np.random.Generator) -> None:
    sid, before = _advanced(client, rng)
    response = client.post(f"/v1/sessions/{sid}/reset", json={"layers": ["gru"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"step": 0, "session_id": sid, "layers": ["gru"]}
    after = [np.asarray(s) for s in session(client, sid)["states"]]
    assert close(after[0], before[0]) and close(after[1], before[1])  # lstm h and c kept
    assert not np.any(after[2])  # gru h zeroed
    assert session(client, sid)["step"] == 0


def test_reset_of_one_layer_to_given_states(client: httpx.Client, rng: np.random.Generator) -> None:
    sid, before = _advanced(client, rng)
    h, c = rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    response = client.post(f"/v1/sessions/{sid}/reset", json={"layers": ["lstm"], "states": [as_list(h), as_list(c)]})
    assert response.status_code == 200, response.text
    after = [np.asarray(s) for s in session(client, sid)["states"]]
    assert close(after[0], h) and close(after[1], c) and close(after[2], before[2])


def test_then_the_session_goes_on_from_the_mixed_state(client: httpx.Client, rng: np.random.Generator) -> None:
    sid, before = _advanced(client, rng)
    client.post(f"/v1/sessions/{sid}/reset", json={"layers": ["lstm"]}).raise_for_status()
    x = rng.normal(size=(1, 3, 3))
    got = step(client, sid, x, return_state=True)
    zeros = np.zeros((1, 4))
    want = client.post(
        "/v1/models/stacked/predict",
        json={"inputs": as_list(x), "initial_state": [as_list(zeros), as_list(zeros), as_list(before[2])]},
    ).json()
    assert close(got["outputs"], want["outputs"])


def test_an_unknown_layer_is_refused_and_changes_nothing(client: httpx.Client, rng: np.random.Generator) -> None:
    sid, before = _advanced(client, rng)
    for body in ({"layers": ["gru", "dense"]}, {"layers": "gru"}, {"layers": ["gru"], "states": [[[1.0]]]}):
        response = client.post(f"/v1/sessions/{sid}/reset", json=body)
        assert response.status_code == 400 and response.headers["content-type"] == PROBLEM_JSON, response.text
    detail = client.post(f"/v1/sessions/{sid}/reset", json={"layers": ["dense"]}).json()["detail"]
    assert "'dense'" in detail and "['lstm', 'gru']" in detail
    after = session(client, sid)
    assert after["step"] == 4 and all(close(a, b) for a, b in zip(after["states"], before, strict=True))


def test_the_stream_takes_a_reset_message_in_order(client: httpx.Client, server: ServerThread) -> None:
    sid = open_session(client, "stacked")["session_id"]
    x = [[[0.1, 0.2, 0.3]]]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
        ws.send(json.dumps({"inputs": x}))
        ws.send(json.dumps({"reset": {"layers": ["gru"]}}))
        ws.send(json.dumps({"reset": {"layers": ["nope"]}}))
        ws.send(json.dumps({"reset": "all"}))
        first, reset, unknown, bad = (json.loads(ws.recv(timeout=30)) for _ in range(4))
        ws.send(json.dumps({"reset": True}))
        whole = json.loads(ws.recv(timeout=30))
    assert first["step"] == 1
    assert reset == {"reset": True, "step": 0, "session_id": sid, "layers": ["gru"]}
    assert unknown["status"] == 400 and bad["status"] == 400
    assert whole == {"reset": True, "step": 0, "session_id": sid}
    assert not np.any(session(client, sid)["states"][0])


def test_the_client_resets_one_layer(server: ServerThread, rng: np.random.Generator) -> None:
    with Client(server.url) as api, api.create_session("stacked") as sess:
        sess.step(rng.normal(size=(1, 2, 3)).astype(np.float32))
        before = sess.info().states
        sess.reset(layers=["lstm"], states=[np.ones((1, 4)), np.full((1, 4), 2.0)])
        after = sess.info().states
        assert sess.seq == 0
        assert close(after[0], np.ones((1, 4))) and close(after[1], np.full((1, 4), 2.0))
        assert close(after[2], before[2])


async def test_the_async_client_resets_one_layer(server: ServerThread) -> None:
    async with AsyncClient(server.url) as api:
        sess = await api.create_session("stacked")
        await sess.step(np.full((1, 2, 3), 0.5, np.float32))
        before = (await sess.info()).states
        await sess.reset(layers=["gru"])
        after = (await sess.info()).states
        assert sess.seq == 0 and before is not None and after is not None
        assert close(after[0], before[0]) and close(after[1], before[1]) and not np.any(after[2])
        await sess.delete()


def test_a_stream_message_with_dropout_is_a_what_if(client: httpx.Client, server: ServerThread) -> None:
    sid = open_session(client, "stacked")["session_id"]
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
        ws.send(json.dumps({"inputs": [[[0.1, 0.2, 0.3]]]}))
        ws.send(json.dumps({"inputs": [[[0.3, 0.2, 0.1]]], "dropout": {"samples": 3, "seed": 1}}))
        first, what_if = (json.loads(ws.recv(timeout=30)) for _ in range(2))
    assert first["step"] == 1 and what_if["step"] == 1
    samples = np.asarray(what_if["outputs"])
    assert samples.shape == (3, 1, 1, 2) and np.allclose(samples[0], samples[2])  # no dropout rate: identical
    assert session(client, sid)["step"] == 1
