"""Sequences are sessions: the same numbers as a /v1 session, shared by replicas through Redis, expiring with
the session TTL."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import numpy as np
import tritonclient.http as triton
from app_harness import ServerThread
from v2_client import close, infer, raises_error
from v2_models import FEATURES

from rnnserve.sequences import session_id_for

CHUNKS = ((0, 1), (1, 3), (3, 4), (4, 7), (7, 8), (8, 10))


def test_a_sequence_over_v2_and_a_v1_session_give_the_same_numbers(
    server: ServerThread, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(2, 10, FEATURES)).astype(np.float32)
    with httpx.Client(base_url=server.url) as http:
        created = http.post("/v1/sessions", json={"model": "lstm", "batch_size": 2})
        session_id = created.json()["session_id"]
        for i, (a, b) in enumerate(CHUNKS):
            chunk = x[:, a:b]
            v1 = http.post(f"/v1/sessions/{session_id}/step", json={"inputs": chunk.tolist(), "return_state": True})
            assert v1.status_code == 200, v1.text
            flags = {"sequence_start": i == 0, "sequence_end": i == len(CHUNKS) - 1}
            v2 = infer(client, "lstm", {"x": chunk}, outputs=["lstm", "lstm/h", "lstm/c"], sequence_id=99, **flags)
            np.testing.assert_array_equal(v2.as_numpy("lstm"), np.array(v1.json()["outputs"], dtype=np.float32))
            for name, state in zip(("lstm/h", "lstm/c"), v1.json()["states"], strict=True):
                np.testing.assert_array_equal(v2.as_numpy(name), np.array(state, dtype=np.float32))
            assert v1.json()["step"] == b


def test_a_sequence_outlives_the_replica_that_started_it(
    make_server: Callable[..., ServerThread], redis_url: str, rng: np.random.Generator
) -> None:
    """Two replicas on one Redis: the first starts a sequence and goes away, the second carries it on."""
    first, second = make_server(store_url=redis_url), make_server(store_url=redis_url)
    x = rng.normal(size=(1, 10, FEATURES)).astype(np.float32)
    sid = 2**64 - 1
    parts = []
    with triton.InferenceServerClient(first.address) as client:
        for i, (a, b) in enumerate(CHUNKS[:3]):
            result = infer(client, "gru", {"x": x[:, a:b]}, outputs=["dense"], sequence_id=sid, sequence_start=i == 0)
            parts.append(result.as_numpy("dense"))
    first.stop()
    with triton.InferenceServerClient(second.address) as client:
        for i, (a, b) in enumerate(CHUNKS[3:], start=3):
            end = i == len(CHUNKS) - 1
            result = infer(client, "gru", {"x": x[:, a:b]}, outputs=["dense"], sequence_id=sid, sequence_end=end)
            parts.append(result.as_numpy("dense"))
        whole = infer(client, "gru", {"x": x}, outputs=["dense"]).as_numpy("dense")
        raises_error(lambda: infer(client, "gru", {"x": x[:, :1]}, sequence_id=sid), 400, contains="not active")
    assert close(np.concatenate(parts, axis=1), whole)


def test_a_sequence_expires_with_the_session_ttl(
    make_server: Callable[..., ServerThread], rng: np.random.Generator
) -> None:
    brief = make_server(default_ttl_s=0.3)
    x = rng.normal(size=(1, 2, FEATURES)).astype(np.float32)
    with triton.InferenceServerClient(brief.address) as client:
        infer(client, "gru", {"x": x[:, :1]}, sequence_id=1, sequence_start=True)
        infer(client, "gru", {"x": x[:, 1:]}, sequence_id=1)  # a use renews the TTL
        time.sleep(0.6)
        raises_error(lambda: infer(client, "gru", {"x": x[:, 1:]}, sequence_id=1), 400, contains="expired")


def test_v1_cannot_reach_a_sequence_by_its_session_id(
    server: ServerThread, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    """Sequence ids are predictable; /v1 answers 404 for them and leaves the sequence as it was."""
    x = rng.normal(size=(1, 4, FEATURES)).astype(np.float32)
    first = infer(client, "gru", {"x": x[:, :2]}, outputs=["dense"], sequence_id=5, sequence_start=True)
    hidden = session_id_for("gru", 5)
    body = {"inputs": x[:, 2:].tolist()}
    with httpx.Client(base_url=server.url) as http:
        for response in (
            http.get(f"/v1/sessions/{hidden}"),
            http.post(f"/v1/sessions/{hidden}/step", json=body),
            http.post(f"/v1/sessions/{hidden}/reset", json={}),
            http.delete(f"/v1/sessions/{hidden}"),
        ):
            assert response.status_code == 404, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
    rest = infer(client, "gru", {"x": x[:, 2:]}, outputs=["dense"], sequence_id=5, sequence_end=True)
    whole = infer(client, "gru", {"x": x}, outputs=["dense"]).as_numpy("dense")
    assert close(np.concatenate([first.as_numpy("dense"), rest.as_numpy("dense")], axis=1), whole)
