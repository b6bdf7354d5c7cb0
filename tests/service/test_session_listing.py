"""GET /v1/sessions: the live sessions, a page at a time, by model; /v2 sequences (which share the store) are not
listed. Runs on the memory store and on the Redis store."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from service_client import assert_problem, open_session, step
from service_models import FEATURES


@pytest.fixture
def client(any_client: httpx.Client) -> httpx.Client:
    return any_client


def _listed(client: httpx.Client, **params: object) -> list[dict]:
    """Every session the listing shows, following the cursor."""
    shown: list[dict] = []
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        response = client.get("/v1/sessions", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        shown.extend(body["sessions"])
        cursor = body["next_cursor"]
        if cursor is None:
            return shown


def test_the_listing_pages_through_the_sessions_by_model(client: httpx.Client) -> None:
    mine = {open_session(client, "gru")["session_id"] for _ in range(3)}
    lstm = open_session(client, "lstm")["session_id"]
    step(client, lstm, np.zeros((1, 2, FEATURES), np.float32))

    grus = [s for s in _listed(client, model="gru", limit=2) if s["session_id"] in mine]
    assert {s["session_id"] for s in grus} == mine
    everything = _listed(client, limit=1)
    ids = [s["session_id"] for s in everything]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) and mine | {lstm} <= set(ids)
    [shown] = [s for s in everything if s["session_id"] == lstm]
    assert (shown["model"], shown["step"], shown["batch_size"]) == ("lstm", 2, 1)
    assert shown["expires_at"].endswith("+00:00")
    assert all(s["model"] == "gru" for s in _listed(client, model="gru"))


def test_v2_sequences_are_not_listed(client: httpx.Client) -> None:
    meta = client.get("/v2/models/gru").json()
    [tensor] = meta["inputs"]
    body = {
        "inputs": [{"name": tensor["name"], "shape": [1, 1, FEATURES], "datatype": "FP32", "data": [0.0] * FEATURES}],
        "parameters": {"sequence_id": 4242, "sequence_start": True},
    }
    assert client.post("/v2/models/gru/infer", json=body).status_code == 200
    assert all(":" not in s["session_id"] for s in _listed(client, limit=3))


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}])
def test_a_bad_page_size_is_400(client: httpx.Client, query: dict) -> None:
    assert_problem(client.get("/v1/sessions", params=query), 400)
