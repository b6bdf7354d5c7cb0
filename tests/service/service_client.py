"""Small client helpers and assertions shared by the service tests."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

PROBLEM_JSON = "application/problem+json"


def as_list(array: np.ndarray) -> Any:
    return np.asarray(array).tolist()


def predict(client: httpx.Client, model: str, inputs: Any, **fields: Any) -> dict[str, Any]:
    response = client.post(f"/v1/models/{model}/predict", json={"inputs": as_list(inputs), **fields})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def open_session(client: httpx.Client, model: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/sessions", json={"model": model, **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def step(client: httpx.Client, session_id: str, inputs: Any, **fields: Any) -> dict[str, Any]:
    response = client.post(f"/v1/sessions/{session_id}/step", json={"inputs": as_list(inputs), **fields})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def session(client: httpx.Client, session_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, status: int, *, contains: str = "") -> dict[str, Any]:
    """A problem+json answer with the given status, whose detail mentions `contains` (case-insensitive)."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert contains.lower() in body["detail"].lower(), body["detail"]
    return body


def close(actual: Any, expected: Any) -> bool:
    """The project tolerance for float32 results: |d| <= 1e-5 + 1e-5*|y|, shapes equal."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return a.shape == e.shape and bool(np.all(np.abs(a - e) <= 1e-5 + 1e-5 * np.abs(e)))


def states_of(body: dict[str, Any]) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.float32) for s in body["states"]]


def close_code(ws: ClientConnection) -> int | None:
    """The code the server closes a stream with: the next receive must find the stream closed by it."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    return None if closed.value.rcvd is None else closed.value.rcvd.code
