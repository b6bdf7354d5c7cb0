"""A stream of k chunks through a session equals one predict over the whole sequence: the outputs at every
unmasked step and the final states, for SimpleRNN, GRU, LSTM and a stacked model, over HTTP and WebSocket.

(At a masked step Keras carries the previous output within one call, and a call starts from zeros, so outputs at
masked steps may differ between a chunked and a whole run; states never do.)
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import as_list, close, open_session, predict, session, step
from service_models import FEATURES
from websockets.sync.client import connect

CHUNKS = (2, 1, 3, 1, 2)  # k = 5 chunks, 9 timesteps
MODELS = ["simple", "gru", "lstm", "stacked"]


def sequence(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(2, sum(CHUNKS), FEATURES)).astype(np.float32)
    mask = np.ones((2, sum(CHUNKS)), dtype=bool)
    mask[0, [2, 5, 6]] = False  # masked steps inside chunks and at a chunk start
    mask[1, 3] = False
    return x, mask


def chunks(x: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    bounds = np.cumsum((0, *CHUNKS))
    return [(x[:, a:b], mask[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def assert_equivalent(outputs: np.ndarray, final_states: list, whole: dict, mask: np.ndarray) -> None:
    expected = np.asarray(whole["outputs"])
    assert outputs.shape == expected.shape
    assert close(outputs[mask], expected[mask])
    assert len(final_states) == len(whole["states"])
    assert all(close(a, b) for a, b in zip(final_states, whole["states"], strict=True))


@pytest.mark.parametrize("model", MODELS)
def test_http_chunks_equal_one_predict(client: httpx.Client, model: str, rng: np.random.Generator) -> None:
    x, mask = sequence(rng)
    whole = predict(client, model, x, mask=as_list(mask), return_state=True)
    sid = open_session(client, model, batch_size=2)["session_id"]

    outputs, seq = [], 0
    for chunk, chunk_mask in chunks(x, mask):
        body = step(client, sid, chunk, mask=as_list(chunk_mask), seq=seq)
        seq += chunk.shape[1]
        assert body["step"] == seq
        outputs.append(np.asarray(body["outputs"]))

    assert_equivalent(np.concatenate(outputs, axis=1), session(client, sid)["states"], whole, mask)


@pytest.mark.parametrize("model", MODELS)
def test_websocket_chunks_equal_one_predict(
    client: httpx.Client, server: ServerThread, model: str, rng: np.random.Generator
) -> None:
    x, mask = sequence(rng)
    whole = predict(client, model, x, mask=as_list(mask), return_state=True)
    sid = open_session(client, model, batch_size=2)["session_id"]

    outputs, replies = [], []
    with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
        for chunk, chunk_mask in chunks(x, mask):  # send them all, then read: replies come back in order
            ws.send(json.dumps({"inputs": as_list(chunk), "mask": as_list(chunk_mask)}))
        replies.extend(json.loads(ws.recv(timeout=30)) for _ in CHUNKS)
    assert [r["step"] for r in replies] == list(np.cumsum(CHUNKS))
    outputs = [np.asarray(r["outputs"]) for r in replies]
    assert_equivalent(np.concatenate(outputs, axis=1), session(client, sid)["states"], whole, mask)
