"""Sessions over HTTP: create, step, get, reset (with and without states), delete, seq retries, concurrency,
expiry and the session cap. Every test runs twice: on the in-memory store and on the Redis store."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import datetime

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import as_list, assert_problem, close, open_session, predict, session, step
from service_models import FEATURES


@pytest.fixture
def client(any_client: httpx.Client) -> httpx.Client:
    """This module's client talks to the memory-store server and to the Redis-store server in turn."""
    return any_client


def test_create_answers_201_with_an_unguessable_id_at_step_zero(client: httpx.Client) -> None:
    response = client.post("/v1/sessions", json={"model": "lstm", "batch_size": 2, "ttl_s": 60})
    assert response.status_code == 201
    body = response.json()
    assert (body["model"], body["batch_size"], body["step"]) == ("lstm", 2, 0)
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", body["session_id"])  # 192 random bits
    assert datetime.fromisoformat(body["expires_at"]).timestamp() == pytest.approx(time.time() + 60, abs=5)
    other = open_session(client, "lstm")
    assert other["session_id"] != body["session_id"] and other["batch_size"] == 1


def test_get_shows_zero_states_then_the_states_after_a_step(client: httpx.Client, rng: np.random.Generator) -> None:
    sid = open_session(client, "lstm", batch_size=2)["session_id"]
    fresh = session(client, sid)
    assert fresh["step"] == 0 and [np.shape(s) for s in fresh["states"]] == [(2, 4), (2, 4)]
    assert not np.any(fresh["states"])

    x = rng.normal(size=(2, 3, FEATURES)).astype(np.float32)
    stepped = step(client, sid, x, return_state=True)
    assert stepped["step"] == 3
    after = session(client, sid)
    assert after["step"] == 3
    assert all(close(a, b) for a, b in zip(after["states"], stepped["states"], strict=True))
    expected = predict(client, "lstm", x, return_state=True)
    assert close(stepped["outputs"], expected["outputs"])
    assert all(close(a, b) for a, b in zip(after["states"], expected["states"], strict=True))


def test_reset_equals_keras_reset_states(client: httpx.Client, rng: np.random.Generator) -> None:
    sid = open_session(client, "gru")["session_id"]
    step(client, sid, rng.normal(size=(1, 4, FEATURES)))
    response = client.post(f"/v1/sessions/{sid}/reset")
    assert response.status_code == 200 and response.json()["step"] == 0
    assert not np.any(session(client, sid)["states"])

    x = rng.normal(size=(1, 3, FEATURES))
    after_reset = step(client, sid, x, return_state=True)
    fresh = predict(client, "gru", x, return_state=True)  # a fresh (zero) state, as after reset_states()
    assert after_reset["step"] == 3
    assert close(after_reset["outputs"], fresh["outputs"]) and close(after_reset["states"][0], fresh["states"][0])


def test_reset_with_states_equals_assigning_them(client: httpx.Client, rng: np.random.Generator) -> None:
    sid = open_session(client, "stacked", batch_size=2)["session_id"]
    step(client, sid, rng.normal(size=(2, 2, FEATURES)))
    states = [rng.normal(size=(2, units)).astype(np.float32) for units in (4, 4, 3)]
    response = client.post(f"/v1/sessions/{sid}/reset", json={"states": [as_list(s) for s in states]})
    assert response.status_code == 200 and response.json()["step"] == 0
    assert all(close(got, want) for got, want in zip(session(client, sid)["states"], states, strict=True))

    x = rng.normal(size=(2, 3, FEATURES))
    stepped = step(client, sid, x, return_state=True)
    assigned = predict(client, "stacked", x, initial_state=[as_list(s) for s in states], return_state=True)
    assert close(stepped["outputs"], assigned["outputs"])
    assert all(close(a, b) for a, b in zip(stepped["states"], assigned["states"], strict=True))


def test_create_with_initial_state_starts_from_it(client: httpx.Client, rng: np.random.Generator) -> None:
    h0 = rng.normal(size=(1, 4)).astype(np.float32)
    sid = open_session(client, "simple", initial_state=[as_list(h0)])["session_id"]
    x = rng.normal(size=(1, 2, FEATURES))
    assert close(step(client, sid, x)["outputs"], predict(client, "simple", x, initial_state=[as_list(h0)])["outputs"])


def test_delete_answers_204_and_the_session_is_gone(client: httpx.Client) -> None:
    sid = open_session(client, "simple")["session_id"]
    response = client.delete(f"/v1/sessions/{sid}")
    assert response.status_code == 204 and response.content == b""
    assert_problem(client.get(f"/v1/sessions/{sid}"), 404, contains=sid)
    assert_problem(client.delete(f"/v1/sessions/{sid}"), 404)
    assert_problem(client.post(f"/v1/sessions/{sid}/step", json={"inputs": [[[0, 0, 0]]]}), 404)


def test_a_bidirectional_model_refuses_sessions_but_serves_predict(client: httpx.Client) -> None:
    response = client.post("/v1/sessions", json={"model": "bidirectional"})
    problem = assert_problem(response, 409, contains="Bidirectional")
    assert "predict" in problem["detail"]
    assert np.shape(predict(client, "bidirectional", np.zeros((1, 2, FEATURES)))["outputs"]) == (1, 2, 6)


def test_session_of_an_unknown_or_failed_model(client: httpx.Client) -> None:
    assert_problem(client.post("/v1/sessions", json={"model": "nope"}), 404, contains="nope")
    assert_problem(client.post("/v1/sessions", json={"model": "broken"}), 503, contains="failed")


# ---- seq: safe retries --------------------------------------------------------------------------------------------


def test_an_exact_retry_gets_the_same_response_and_does_not_advance(client: httpx.Client) -> None:
    sid = open_session(client, "gru")["session_id"]
    body = {"inputs": [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]], "seq": 0, "return_state": True}
    first = client.post(f"/v1/sessions/{sid}/step", json=body)
    states_after_first = session(client, sid)["states"]
    retry = client.post(f"/v1/sessions/{sid}/step", json=body)

    assert first.status_code == retry.status_code == 200
    assert retry.content == first.content and first.json()["step"] == 2
    after = session(client, sid)
    assert after["step"] == 2 and after["states"] == states_after_first

    nxt = client.post(f"/v1/sessions/{sid}/step", json={**body, "seq": 2})
    assert nxt.status_code == 200 and nxt.json()["step"] == 4


def test_any_other_stale_seq_is_a_409_with_the_current_step(client: httpx.Client) -> None:
    sid = open_session(client, "gru")["session_id"]
    body = {"inputs": [[[0.1, 0.2, 0.3]]], "seq": 0}
    assert client.post(f"/v1/sessions/{sid}/step", json=body).status_code == 200
    states = session(client, sid)["states"]

    other_body = {"inputs": [[[0.9, 0.2, 0.3]]], "seq": 0}  # stale by one step, but not the same request
    problem = assert_problem(client.post(f"/v1/sessions/{sid}/step", json=other_body), 409, contains="step 1")
    assert problem["step"] == 1
    for seq in (5, 2):  # ahead of the session
        assert assert_problem(client.post(f"/v1/sessions/{sid}/step", json={**body, "seq": seq}), 409)["step"] == 1
    after = session(client, sid)
    assert after["step"] == 1 and after["states"] == states


def test_a_retry_after_a_later_step_is_a_conflict(client: httpx.Client) -> None:
    sid = open_session(client, "simple")["session_id"]
    first = {"inputs": [[[0.1, 0.2, 0.3]]], "seq": 0}
    client.post(f"/v1/sessions/{sid}/step", json=first)
    client.post(f"/v1/sessions/{sid}/step", json={**first, "seq": 1})
    assert assert_problem(client.post(f"/v1/sessions/{sid}/step", json=first), 409)["step"] == 2


# ---- concurrency --------------------------------------------------------------------------------------------------


async def test_32_concurrent_steps_apply_one_at_a_time(any_server: ServerThread, rng: np.random.Generator) -> None:
    xs = rng.normal(size=(32, 1, 1, FEATURES)).astype(np.float32)
    async with httpx.AsyncClient(base_url=any_server.url, timeout=60.0) as client:
        sid = (await client.post("/v1/sessions", json={"model": "lstm"})).json()["session_id"]
        responses = await asyncio.gather(
            *(client.post(f"/v1/sessions/{sid}/step", json={"inputs": as_list(x)}) for x in xs)
        )
        final = (await client.get(f"/v1/sessions/{sid}")).json()
        bodies = [r.json() for r in responses]
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        assert sorted(b["step"] for b in bodies) == list(range(1, 33))

        order = np.argsort([b["step"] for b in bodies])
        replay_inputs = np.concatenate([xs[i] for i in order], axis=1)  # (1, 32, F) in step order
        replay = (
            await client.post("/v1/models/lstm/predict", json={"inputs": as_list(replay_inputs), "return_state": True})
        ).json()
    assert final["step"] == 32
    assert all(close(a, b) for a, b in zip(final["states"], replay["states"], strict=True))
    for position, index in enumerate(order):
        assert close(bodies[index]["outputs"], np.asarray(replay["outputs"])[:, position : position + 1])


# ---- expiry and the cap -------------------------------------------------------------------------------------------


def test_an_idle_session_expires_and_use_renews_it(client: httpx.Client) -> None:
    idle = open_session(client, "simple", ttl_s=0.6)["session_id"]
    used = open_session(client, "simple", ttl_s=0.6)["session_id"]
    for _ in range(3):
        time.sleep(0.35)
        step(client, used, np.zeros((1, 1, FEATURES)))
    assert_problem(client.get(f"/v1/sessions/{idle}"), 404)
    assert session(client, used)["step"] == 3
    assert "rnnserve_session_expirations_total" in client.get("/metrics").text


@pytest.mark.parametrize("ttl", [0, -1, 10**9])
def test_ttl_out_of_bounds_is_refused(client: httpx.Client, ttl: float) -> None:
    assert_problem(client.post("/v1/sessions", json={"model": "simple", "ttl_s": ttl}), 400, contains="ttl_s")


def test_the_session_cap_answers_429_until_a_session_goes(
    make_server: Callable[..., ServerThread], store_kind: str, request: pytest.FixtureRequest
) -> None:
    store_url = "memory://" if store_kind == "memory" else request.getfixturevalue("redis_url").replace("/0", "/1")
    server = make_server(max_sessions=2, store_url=store_url)
    with httpx.Client(base_url=server.url) as client:
        first, _ = open_session(client, "gru"), open_session(client, "gru")
        assert_problem(client.post("/v1/sessions", json={"model": "gru"}), 429, contains="maximum of 2")
        assert client.delete(f"/v1/sessions/{first['session_id']}").status_code == 204
        open_session(client, "gru")
        metrics = client.get("/metrics").text
    assert "rnnserve_sessions_active 2.0" in metrics
    assert 'rnnserve_requests_total{method="POST",route="/v1/sessions",status="429"} 1.0' in metrics
