"""Two replicas on one Redis, each keeping copies of the sessions it served: every answer is the one a replica
reading Redis on every step would give, whichever replica a step reaches and however stale its copy."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import as_list, close, open_session, predict, session, states_of, step
from service_models import FEATURES

MODEL = "stacked"


def rereads(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    found = re.findall(r"^rnnserve_session_rereads_total (\S+)$", text, re.M)
    return float(found[0]) if found else 0.0


@pytest.fixture
def replicas(make_server: Callable[..., ServerThread], redis_url: str) -> list[httpx.Client]:
    servers = [make_server(store_url=redis_url, executor="dynamic") for _ in range(2)]
    clients = [httpx.Client(base_url=s.url, timeout=30.0) for s in servers]
    yield clients  # type: ignore[misc]
    for client in clients:
        client.close()


def test_steps_without_seq_alternating_replicas_equal_one_predict(
    replicas: list[httpx.Client], rng: np.random.Generator
) -> None:
    a, b = replicas
    session_id = open_session(a, MODEL)["session_id"]
    chunks = [rng.standard_normal((1, int(t), FEATURES)).astype(np.float32) for t in rng.integers(1, 5, 8)]
    route = [a, a, b, a, b, b, a, a]  # a's copy is stale at the 4th and 7th steps, b's at the 5th
    outputs = [
        np.asarray(step(client, session_id, chunk)["outputs"]) for client, chunk in zip(route, chunks, strict=True)
    ]

    whole = np.concatenate(chunks, axis=1)
    expected = predict(b, MODEL, whole, return_state=True)
    assert close(np.concatenate(outputs, axis=1), expected["outputs"])
    got = session(a, session_id)
    assert got["step"] == whole.shape[1]
    assert all(close(s, e) for s, e in zip(states_of(got), states_of(expected), strict=True))
    assert (rereads(a), rereads(b)) == (2, 1)  # each stale copy cost one read, and nothing else did


def test_a_stale_copy_answers_a_retry_seq_conflict_and_next_step_as_a_fresh_read_would(
    replicas: list[httpx.Client], rng: np.random.Generator
) -> None:
    a, b = replicas
    session_id = open_session(a, MODEL)["session_id"]
    x0, x1, x2, other = (rng.standard_normal((1, 2, FEATURES)).astype(np.float32) for _ in range(4))
    step(a, session_id, x0, seq=0)
    reply_b = b.post(f"/v1/sessions/{session_id}/step", json={"inputs": as_list(x1), "seq": 2})
    assert reply_b.status_code == 200

    # a's copy is at step 2; b moved the session to 4. The very request b served, retried on a: b's reply.
    retried = a.post(f"/v1/sessions/{session_id}/step", json={"inputs": as_list(x1), "seq": 2})
    assert (retried.status_code, retried.content) == (200, reply_b.content)
    # a different body at that seq: a conflict that tells where the session really is
    conflict = a.post(f"/v1/sessions/{session_id}/step", json={"inputs": as_list(other), "seq": 2})
    assert conflict.status_code == 409 and conflict.json()["step"] == 4
    # and the next step goes on from b's state
    last = step(a, session_id, x2, seq=4)
    assert last["step"] == 6

    expected = predict(b, MODEL, np.concatenate([x0, x1, x2], axis=1))
    assert close(last["outputs"], np.asarray(expected["outputs"])[:, 4:])


def test_a_session_deleted_on_one_replica_is_gone_on_the_other(replicas: list[httpx.Client]) -> None:
    a, b = replicas
    session_id = open_session(a, MODEL)["session_id"]
    step(a, session_id, np.zeros((1, 1, FEATURES), np.float32))
    assert b.delete(f"/v1/sessions/{session_id}").status_code == 204
    gone = a.post(f"/v1/sessions/{session_id}/step", json={"inputs": [[[0.0] * FEATURES]]})
    assert gone.status_code == 404
