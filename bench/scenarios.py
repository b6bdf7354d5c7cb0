"""Load scenarios: how each kind of client opens its connection (and session) and makes one request.

Every builder returns the clients' step functions and an async `close`. Request bodies are made once per
client, so the load generator measures the server, not its own serialisation.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import numpy as np
import orjson

from bench.loadgen import HttpConnection, Step, WsConnection, json_body, split_url

FEATURES = 32
Close = Callable[[], Awaitable[None]]


def _check(status: int, payload: bytes, what: str) -> None:
    if status >= 300:
        raise RuntimeError(f"{what}: HTTP {status} {payload[:300]!r}")


def _features(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


async def _session(conn: HttpConnection, model: str) -> str:
    status, payload, _ = await conn.request("POST", "/v1/sessions", json_body({"model": model, "batch_size": 1}))
    _check(status, payload, "create session")
    return str(orjson.loads(payload)["session_id"])


async def build_clients(scenario: str, url: str, model: str, sessions: int, history: int) -> tuple[list[Step], Close]:
    host, port = split_url(url)
    rng = np.random.default_rng(0)
    connections: list[HttpConnection | WsConnection] = []
    clients: list[Step] = []
    builder = SCENARIOS[scenario]
    for _ in range(sessions):
        clients.append(await builder(host, port, model, history, rng, connections))

    async def close() -> None:
        for conn in connections:
            await conn.close()

    return clients, close


Builder = Callable[[str, int, str, int, np.random.Generator, list], Awaitable[Step]]


async def _http(host: str, port: int, connections: list) -> HttpConnection:
    conn = HttpConnection(host, port)
    await conn.open()
    connections.append(conn)
    return conn


async def step_json(host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list) -> Step:
    conn = await _http(host, port, conns)
    path = f"/v1/sessions/{await _session(conn, model)}/step"
    body = json_body({"inputs": _features(rng, 1, 1, FEATURES)})

    async def step() -> int:
        status, payload, _ = await conn.request("POST", path, body)
        _check(status, payload, "step")
        return 1

    return step


async def step_at_history(
    host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list
) -> Step:
    """A session step after `history` timesteps have already streamed through the session."""
    conn = await _http(host, port, conns)
    path = f"/v1/sessions/{await _session(conn, model)}/step"
    status, payload, _ = await conn.request("POST", path, json_body({"inputs": _features(rng, 1, history, FEATURES)}))
    _check(status, payload, "prefill")
    return await _repeat(conn, path, json_body({"inputs": _features(rng, 1, 1, FEATURES)}))


async def _repeat(
    conn: HttpConnection, path: str, body: bytes, content_type: str = "application/json", headers: str = ""
) -> Step:
    async def step() -> int:
        status, payload, _ = await conn.request("POST", path, body, content_type, headers)
        _check(status, payload, path)
        return 1

    return step


async def step_binary(host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list) -> Step:
    conn = await _http(host, port, conns)
    path = f"/v1/sessions/{await _session(conn, model)}/step"
    body = _features(rng, 1, 1, FEATURES).tobytes()
    return await _repeat(conn, path, body, "application/octet-stream", f"X-Shape: 1,1,{FEATURES}\r\n")


async def stream(host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list) -> Step:
    http = await _http(host, port, conns)
    session_id = await _session(http, model)
    ws = WsConnection(host, port)
    await ws.open(f"/v1/sessions/{session_id}/stream")
    conns.append(ws)
    message = json_body({"inputs": _features(rng, 1, 1, FEATURES)})

    async def step() -> int:
        await ws.send(message)
        reply = await ws.receive()
        if b'"step"' not in reply:
            raise RuntimeError(f"stream error: {reply[:200]!r}")
        return 1

    return step


async def predict(host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list) -> Step:
    """Whole-sequence stateless predict, B=32, T=100."""
    conn = await _http(host, port, conns)
    body = json_body({"inputs": _features(rng, 32, 100, FEATURES)})
    path = f"/v1/models/{model}/predict"

    async def step() -> int:
        status, payload, _ = await conn.request("POST", path, body)
        _check(status, payload, "predict")
        return 32 * 100

    return step


async def stateless_history(
    host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list
) -> Step:
    """The naive alternative: no session, the client resends its whole history to get one new step."""
    conn = await _http(host, port, conns)
    body = json_body({"inputs": _features(rng, 1, history, FEATURES)})
    return await _repeat(conn, f"/v1/models/{model}/predict", body)


async def ceiling(host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list) -> Step:
    """The minimal FastAPI app (bench/minimal_app.py): parse the same body as step-json, answer a constant."""
    conn = await _http(host, port, conns)
    return await _repeat(conn, "/echo", json_body({"inputs": _features(rng, 1, 1, FEATURES)}))


_sequence_ids = itertools.count(1)


def _v2(binary: bool) -> Builder:
    async def build(host: str, port: int, model: str, history: int, rng: np.random.Generator, conns: list) -> Step:
        conn = await _http(host, port, conns)
        sequence_id = next(_sequence_ids)
        x = _features(rng, 1, 1, FEATURES)
        started = False
        path = f"/v2/models/{model}/infer"

        def body(start: bool) -> tuple[bytes, str, str]:
            tensor: dict[str, object] = {"name": "x", "shape": list(x.shape), "datatype": "FP32"}
            if not binary:
                tensor["data"] = x.reshape(-1)
            else:
                tensor["parameters"] = {"binary_data_size": x.nbytes}
            params = {"sequence_id": sequence_id, "sequence_start": start, "binary_data_output": binary}
            header = json_body({"inputs": [tensor], "parameters": params})
            if not binary:
                return header, "application/json", ""
            return (
                header + x.tobytes(),
                "application/octet-stream",
                f"Inference-Header-Content-Length: {len(header)}\r\n",
            )

        first, steady = body(True), body(False)

        async def step() -> int:
            nonlocal started
            payload_body, content_type, headers = steady if started else first
            status, payload, _ = await conn.request("POST", path, payload_body, content_type, headers)
            _check(status, payload, "v2 infer")
            started = True
            return 1

        return step

    return build


SCENARIOS: dict[str, Builder] = {
    "step-json": step_json,
    "step-binary": step_binary,
    "step-at-history": step_at_history,
    "stream": stream,
    "predict": predict,
    "history": stateless_history,
    "ceiling": ceiling,
    "v2-json": _v2(False),
    "v2-binary": _v2(True),
}
