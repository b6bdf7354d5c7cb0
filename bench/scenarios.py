"""Load scenarios: how each kind of client opens its connection (and session) and makes one request.

Every builder returns one client's step function; `build_clients` makes N of them and an async `close`. Requests
(and WebSocket frames) are made once per client, so the load generator measures the server, not its own
serialisation.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import orjson

from bench.loadgen import HttpConnection, Step, WsConnection, json_body, split_url

FEATURES = 32
PREDICT_SHAPE = (32, 100)  # (B, T) of the whole-sequence predict scenario
Close = Callable[[], Awaitable[None]]
Connection = HttpConnection | WsConnection


@dataclass(frozen=True)
class Target:
    """Where the clients go and what they send: the server, its model, and the history length (for the history
    scenarios)."""

    host: str
    port: int
    model: str = "bench_rnn"
    history: int = 10
    per_connection: int = 1  # sessions on one connection (the multiplexed stream)


Builder = Callable[[Target, np.random.Generator, list[Connection]], Awaitable[Step]]


def _check(status: int, payload: bytes, what: str) -> None:
    if status >= 300:
        raise RuntimeError(f"{what}: HTTP {status} {payload[:300]!r}")


def _features(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


async def _http(target: Target, connections: list[Connection]) -> HttpConnection:
    conn = HttpConnection(target.host, target.port)
    await conn.open()
    connections.append(conn)
    return conn


async def _session(conn: HttpConnection, model: str) -> str:
    status, payload, _ = await conn.request("POST", "/v1/sessions", json_body({"model": model, "batch_size": 1}))
    _check(status, payload, "create session")
    return str(orjson.loads(payload)["session_id"])


def _repeat(conn: HttpConnection, request: bytes, steps: int, what: str) -> Step:
    """A client that sends the same prepared request again and again; each carries `steps` timesteps."""

    async def step() -> int:
        status, payload, _ = await conn.send(request)
        _check(status, payload, what)
        return steps

    return step


async def build_clients(
    scenario: str, url: str, model: str, sessions: int, history: int, per_connection: int = 1
) -> tuple[list[Step], Close]:
    """`sessions` clients (each its own connection; for the multiplexed stream, each carrying `per_connection`
    sessions)."""
    host, port = split_url(url)
    target = Target(host, port, model, history, per_connection)
    rng = np.random.default_rng(0)
    connections: list[Connection] = []
    builder = SCENARIOS[scenario]
    clients = [await builder(target, rng, connections) for _ in range(sessions)]

    async def close() -> None:
        for conn in connections:
            await conn.close()

    return clients, close


# ---- sessions -------------------------------------------------------------------------------------------------------


async def step_json(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """POST /v1/sessions/{id}/step with one timestep as JSON."""
    conn = await _http(target, conns)
    path = f"/v1/sessions/{await _session(conn, target.model)}/step"
    body = json_body({"inputs": _features(rng, 1, 1, FEATURES)})
    return _repeat(conn, conn.prepare("POST", path, body), 1, "step")


async def step_binary(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """The same step as raw float32 bytes (`application/octet-stream`, `X-Shape`), answered in raw bytes."""
    conn = await _http(target, conns)
    path = f"/v1/sessions/{await _session(conn, target.model)}/step"
    body = _features(rng, 1, 1, FEATURES).tobytes()
    request = conn.prepare("POST", path, body, "application/octet-stream", f"X-Shape: 1,1,{FEATURES}\r\n")
    return _repeat(conn, request, 1, "binary step")


async def step_at_history(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """A one-timestep JSON step of a session that has already consumed `history` timesteps."""
    conn = await _http(target, conns)
    path = f"/v1/sessions/{await _session(conn, target.model)}/step"
    prefill = json_body({"inputs": _features(rng, 1, target.history, FEATURES)})
    status, payload, _ = await conn.request("POST", path, prefill)
    _check(status, payload, "prefill")
    body = json_body({"inputs": _features(rng, 1, 1, FEATURES)})
    return _repeat(conn, conn.prepare("POST", path, body), 1, "step at history")


async def _stream(target: Target, conns: list[Connection], query: str = "") -> WsConnection:
    http = await _http(target, conns)
    session_id = await _session(http, target.model)
    ws = WsConnection(target.host, target.port)
    await ws.open(f"/v1/sessions/{session_id}/stream{query}")
    conns.append(ws)
    return ws


async def stream(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """WS /v1/sessions/{id}/stream: one JSON text message per timestep, one reply each."""
    ws = await _stream(target, conns)
    frame = ws.frame(json_body({"inputs": _features(rng, 1, 1, FEATURES)}))

    async def step() -> int:
        ws.send_frame(frame)
        reply = await ws.receive()
        if b'"step"' not in reply:
            raise RuntimeError(f"stream error: {reply[:200]!r}")
        return 1

    return step


async def stream_binary(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """The stream with binary frames (`?shape=1,1,F`): raw float32 in, step counter and raw outputs back."""
    ws = await _stream(target, conns, f"?shape=1,1,{FEATURES}")
    frame = ws.frame(_features(rng, 1, 1, FEATURES).tobytes(), binary=True)

    async def step() -> int:
        ws.send_frame(frame)
        reply = await ws.receive()
        if not ws.last_binary:  # errors come back as problem+json text messages
            raise RuntimeError(f"stream error: {reply[:200]!r}")
        return 1

    return step


async def multiplexed(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """WS /v1/streams: one connection carrying `per_connection` sessions opened on it; each frame holds one
    one-timestep record per session (binary), and its reply one result per record. Counts one step per record."""
    ws = WsConnection(target.host, target.port)
    await ws.open("/v1/streams")
    conns.append(ws)
    n = target.per_connection
    await ws.send(json_body({"open": [{"model": target.model, "batch_size": 1} for _ in range(n)]}))
    opened = orjson.loads(await ws.receive())["opened"]
    indices = [entry["index"] for entry in opened]  # KeyError on a problem entry: the scenario cannot start
    x = _features(rng, n, FEATURES)
    records = [MUX_STEP.pack(index, 0, 0, FEATURES * 4) + x[i].tobytes() for i, index in enumerate(indices)]
    frame = ws.frame(MUX_FRAME.pack(1, 1, 0, n) + b"".join(records), binary=True)
    expected: list[int] = []

    async def step() -> int:
        ws.send_frame(frame)
        reply = await ws.receive()
        if not ws.last_binary or len(reply) != (expected[0] if expected else _check_results(reply, n)):
            raise RuntimeError(f"multiplexed stream error: {reply[:300]!r}")
        if not expected:
            expected.append(len(reply))
        return n

    return step


MUX_FRAME = struct.Struct("<BBHI")
MUX_STEP = struct.Struct("<IIQI")
MUX_RESULT = struct.Struct("<IHHI")


def _check_results(reply: bytes, n: int) -> int:
    """A results frame's length when it holds `n` records, all 200; else raises."""
    version, kind, _, count = MUX_FRAME.unpack_from(reply)
    if (version, kind, count) != (1, 2, n):
        raise RuntimeError(f"results frame: version {version}, kind {kind}, {count} records")
    offset = MUX_FRAME.size
    for _ in range(count):
        _, status, _, length = MUX_RESULT.unpack_from(reply, offset)
        if status != 200:
            raise RuntimeError(f"record failed with {status}: {reply[offset + 12 : offset + 12 + length][:300]!r}")
        offset += MUX_RESULT.size + length
    return len(reply)


# ---- stateless ------------------------------------------------------------------------------------------------------


async def predict(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """Whole-sequence stateless predict, B=32, T=100 (counts B*T timesteps per request)."""
    conn = await _http(target, conns)
    batch, steps = PREDICT_SHAPE
    body = json_body({"inputs": _features(rng, batch, steps, FEATURES)})
    return _repeat(conn, conn.prepare("POST", f"/v1/models/{target.model}/predict", body), batch * steps, "predict")


async def predict_binary(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """The same predict with a binary body and reply (raw float32, `?shape=`)."""
    conn = await _http(target, conns)
    batch, steps = PREDICT_SHAPE
    body = _features(rng, batch, steps, FEATURES).tobytes()
    path = f"/v1/models/{target.model}/predict?shape={batch},{steps},{FEATURES}"
    request = conn.prepare("POST", path, body, "application/octet-stream")
    return _repeat(conn, request, batch * steps, "binary predict")


async def stateless_history(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """The naive alternative to sessions: resend the whole history (`history` timesteps) to get one new step."""
    conn = await _http(target, conns)
    body = json_body({"inputs": _features(rng, 1, target.history, FEATURES)})
    return _repeat(conn, conn.prepare("POST", f"/v1/models/{target.model}/predict", body), 1, "stateless history")


async def ceiling(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
    """The minimal FastAPI app (bench/minimal_app.py): parse the same body as step-json, answer a constant."""
    conn = await _http(target, conns)
    body = json_body({"inputs": _features(rng, 1, 1, FEATURES)})
    return _repeat(conn, conn.prepare("POST", "/echo", body), 1, "ceiling")


# ---- /v2 ------------------------------------------------------------------------------------------------------------

_sequence_ids = itertools.count(1)


def _v2(binary: bool) -> Builder:
    async def build(target: Target, rng: np.random.Generator, conns: list[Connection]) -> Step:
        conn = await _http(target, conns)
        sequence_id = next(_sequence_ids)
        x = _features(rng, 1, 1, FEATURES)
        path = f"/v2/models/{target.model}/infer"

        def request(start: bool) -> bytes:
            tensor: dict[str, object] = {"name": "x", "shape": list(x.shape), "datatype": "FP32"}
            if binary:
                tensor["parameters"] = {"binary_data_size": x.nbytes}
            else:
                tensor["data"] = x.reshape(-1)
            params = {"sequence_id": sequence_id, "sequence_start": start, "binary_data_output": binary}
            header = json_body({"inputs": [tensor], "parameters": params})
            if not binary:
                return conn.prepare("POST", path, header)
            extra = f"Inference-Header-Content-Length: {len(header)}\r\n"
            return conn.prepare("POST", path, header + x.tobytes(), "application/octet-stream", extra)

        status, payload, _ = await conn.send(request(True))
        _check(status, payload, "v2 sequence start")
        return _repeat(conn, request(False), 1, "v2 infer")

    return build


SCENARIOS: dict[str, Builder] = {
    "step-json": step_json,
    "step-binary": step_binary,
    "step-at-history": step_at_history,
    "stream": stream,
    "stream-binary": stream_binary,
    "multiplexed": multiplexed,
    "predict": predict,
    "predict-binary": predict_binary,
    "history": stateless_history,
    "ceiling": ceiling,
    "v2-json": _v2(False),
    "v2-binary": _v2(True),
}
