"""The protocol's fast path (`rnnserve.api.protocol.HotCycle`): a small POST to a hot route is served without
uvicorn's request cycle, and answers exactly as that cycle would.

Over raw sockets against the real server: the same request sent with a Content-Length (the fast path) and with a
chunked body (uvicorn's cycle) gets the same status, headers and body; requests the fast path leaves to uvicorn
(large, chunked, `Expect`, HTTP/1.0, escaped paths, other methods) are counted as such; pipelining in either
order, bodies split over several packets, `Connection: close`, the request deadline, a client that leaves, the
access log, and a graceful shutdown in the middle of a request."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from app_harness import ServerThread

from rnnserve.api import protocol

STEP = b'{"inputs": [[[0.1, 0.2, 0.3]]]}'


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths of the requests the fast path took, while the test runs."""
    taken: list[str] = []

    class Counted(protocol.HotCycle):
        __slots__ = ()

        def __init__(self, owner: Any, scope: Any, *args: Any) -> None:
            taken.append(scope["path"])
            super().__init__(owner, scope, *args)

    monkeypatch.setattr(protocol, "HotCycle", Counted)
    yield taken


# ---- raw HTTP/1.1 -------------------------------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def comparable(self) -> tuple[int, dict[str, str], bytes]:
        """Everything but the Date header, which moves every second."""
        return self.status, {k: v for k, v in self.headers.items() if k != "date"}, self.body


def read_responses(sock: socket.socket, count: int) -> list[Response]:
    buffer = b""
    responses: list[Response] = []
    while len(responses) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(buffer) >= head_end + 4 + length:
                body = buffer[head_end + 4 : head_end + 4 + length]
                responses.append(Response(int(lines[0].split()[1]), headers, body))
                buffer = buffer[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed the connection after {len(responses)} response(s)")
        buffer += chunk
    return responses


def post(path: str, body: bytes, *, headers: str = "", chunked: bool = False, version: str = "1.1") -> bytes:
    """A POST request, its body sent with a Content-Length or in two chunks."""
    head = f"POST {path} HTTP/{version}\r\nHost: test\r\ncontent-type: application/json\r\n{headers}"
    if not chunked:
        return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]) if part)
    return f"{head}transfer-encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"


def exchange(server: ServerThread, *requests: bytes) -> list[Response]:
    """Send `requests` at once on one connection (pipelined) and read their responses."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        return read_responses(sock, len(requests))


def new_session(client: httpx.Client, model: str = "simple") -> str:
    reply = client.post("/v1/sessions", json={"model": model})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["session_id"])


# ---- the same answers as uvicorn's cycle --------------------------------------------------------------------------


def test_a_step_answers_alike_either_way(server: ServerThread, client: httpx.Client, served: list[str]) -> None:
    fast, slow = new_session(client), new_session(client)  # two fresh sessions: the same step from zeros
    (by_fast,) = exchange(server, post(f"/v1/sessions/{fast}/step", STEP))
    (by_cycle,) = exchange(server, post(f"/v1/sessions/{slow}/step", STEP, chunked=True))
    assert served == [f"/v1/sessions/{fast}/step"]
    assert by_fast.status == 200 and by_fast.comparable() == by_cycle.comparable()
    assert "date" in by_fast.headers and "date" in by_cycle.headers
    assert orjson.loads(by_fast.body)["step"] == 1


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/v1/models/simple/predict", STEP, "", 200),
        ("/v1/models/simple/predict", b'{"inputs": [[[0.1, 0.2]]]}', "", 400),  # wrong feature count
        ("/v1/models/simple/predict", b"{not json", "", 400),
        ("/v1/models/simple/predict", STEP, "accept: application/octet-stream\r\n", 200),
        ("/v1/models/nope/predict", STEP, "", 404),
        ("/v1/sessions/no-such-session/step", STEP, "", 404),
        ("/v1/sessions/a:b/step", STEP, "", 404),
        (
            "/v2/models/simple/infer",
            b'{"inputs": [{"name": "x", "shape": [1, 1, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.3]}]}',
            "",
            200,
        ),
        ("/v2/models/simple/infer", b'{"inputs": []}', "", 400),
    ],
)
def test_answers_and_errors_alike_either_way(
    server: ServerThread, served: list[str], path: str, body: bytes, headers: str, status: int
) -> None:
    (by_fast,) = exchange(server, post(path, body, headers=headers))
    (by_cycle,) = exchange(server, post(path, body, headers=headers, chunked=True))
    assert served == [path]
    assert by_fast.status == status, by_fast.body
    assert by_fast.comparable() == by_cycle.comparable()


def test_a_json_body_must_say_so_on_the_fast_path_too(server: ServerThread, served: list[str]) -> None:
    request = post("/v1/models/simple/predict", STEP).replace(b"application/json", b"text/plain")
    (reply,) = exchange(server, request)
    assert reply.status == 415 and served == ["/v1/models/simple/predict"]


def test_keys_are_checked_on_the_fast_path(make_server: Any, served: list[str]) -> None:
    keyed = make_server(api_key="sesame")
    (refused,) = exchange(keyed, post("/v1/models/simple/predict", STEP))
    (allowed,) = exchange(keyed, post("/v1/models/simple/predict", STEP, headers="authorization: Bearer sesame\r\n"))
    assert (refused.status, refused.headers["www-authenticate"]) == (401, "Bearer")
    assert allowed.status == 200 and len(served) == 2


def test_the_request_metrics_count_the_fast_path(server: ServerThread, client: httpx.Client, served: list[str]) -> None:
    def count() -> float:
        for line in client.get("/metrics").text.splitlines():
            wanted = 'route="/v1/models/{model}/predict"' in line and 'status="200"' in line
            if line.startswith("rnnserve_requests_total{") and wanted:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count()
    exchange(server, post("/v1/models/simple/predict", STEP), post("/v1/models/simple/predict", STEP))
    assert count() == before + 2 and len(served) == 2


# ---- what the fast path leaves to uvicorn's cycle -----------------------------------------------------------------


def test_requests_outside_the_fast_path_are_served_by_uvicorns_cycle(server: ServerThread, served: list[str]) -> None:
    row = b"[" + b",".join([b"[0.1, 0.2, 0.3]"] * 900) + b"]"
    big = b'{"inputs": [' + b",".join([row] * 5) + b"]}"  # 5 rows of 900 timesteps
    assert len(big) > protocol.HOT_BODY_MAX
    requests = [
        post("/v1/models/simple/predict", big),  # larger than the fast path takes
        post("/v1/models/simple/predict", STEP, chunked=True),  # no Content-Length
        post("/v1/models/simple/predict", STEP, version="1.0"),
        post("/v1/models/%73imple/predict", STEP),  # an escaped path
        post("/v1/models/simple/predict?x=1", STEP),  # a query string is fine: this one is fast
    ]
    for request in requests:
        (reply,) = exchange(server, request)
        assert reply.status == 200, reply.body
    assert served == ["/v1/models/simple/predict"]


def test_expect_100_continue_goes_through_uvicorns_cycle(server: ServerThread, served: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        request = post("/v1/models/simple/predict", STEP, headers="expect: 100-continue\r\n")
        sock.sendall(request[: -len(STEP)])  # the head: the body only once the server asks for it
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(STEP)
        (reply,) = read_responses(sock, 1)
    assert reply.status == 200 and served == []


def test_other_methods_on_a_hot_path_get_405(server: ServerThread, served: list[str]) -> None:
    raw = b"GET /v1/models/simple/predict HTTP/1.1\r\nHost: t\r\n\r\n"
    (reply,) = exchange(server, raw)
    assert reply.status == 405 and reply.headers["allow"] == "POST" and served == []


# ---- the connection -----------------------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(
    server: ServerThread, client: httpx.Client, served: list[str]
) -> None:
    session = new_session(client)
    health = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    step = post(f"/v1/sessions/{session}/step", STEP)
    replies = exchange(server, step, step, health, step, post("/v1/models/simple/predict", STEP, chunked=True), step)
    assert [r.status for r in replies] == [200] * 6
    steps = [orjson.loads(r.body)["step"] for r in replies if b'"step"' in r.body]
    assert steps == [1, 2, 3, 4]  # in order, each after the one before
    assert orjson.loads(replies[2].body)["status"] == "ok"
    assert len(served) == 4


def test_a_body_split_over_packets(server: ServerThread, served: list[str]) -> None:
    request = post("/v1/models/simple/predict", STEP)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in (request[:20], request[20:-10], request[-10:-3], request[-3:]):
            sock.sendall(part)
            time.sleep(0.05)
        (reply,) = read_responses(sock, 1)
    assert reply.status == 200 and served == ["/v1/models/simple/predict"]


def test_connection_close_is_honoured(server: ServerThread, served: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post("/v1/models/simple/predict", STEP, headers="connection: close\r\n"))
        (reply,) = read_responses(sock, 1)
        assert reply.status == 200 and reply.headers["connection"] == "close"
        assert sock.recv(65536) == b""  # and the server closed the connection
    assert len(served) == 1


def test_a_body_that_never_completes_gets_408(make_server: Any, served: list[str]) -> None:
    slow = make_server(request_timeout_s=0.5)
    with socket.create_connection(("127.0.0.1", slow.port), timeout=10) as sock:
        sock.sendall(post("/v1/models/simple/predict", STEP)[:-5])
        (reply,) = read_responses(sock, 1)
        assert reply.status == 408
        assert sock.recv(65536) == b""
    assert len(served) == 1  # it was a fast-path request, held to the same deadline


def test_a_client_that_leaves_leaves_the_server_serving(
    server: ServerThread, client: httpx.Client, served: list[str]
) -> None:
    for cut in (10, -5, 0):  # mid-head, mid-body, after the whole request
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            request = post("/v1/models/simple/predict", STEP)
            sock.sendall(request[:cut] if cut else request)
    (reply,) = exchange(server, post("/v1/models/simple/predict", STEP))
    assert reply.status == 200
    assert client.get("/healthz").status_code == 200


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_full_access_log_has_the_same_line(make_server: Any) -> None:
    logged = make_server(access_log="full", log_level="info")
    seen = Lines()
    access = logging.getLogger("uvicorn.access")  # it does not propagate: listen on it (instead of its handlers)
    level, handlers = access.level, access.handlers  # the test servers run uvicorn at WARNING
    access.handlers = [seen]
    access.setLevel(logging.INFO)
    try:
        exchange(logged, post("/v1/models/simple/predict?q=1", STEP))
        exchange(logged, post("/v1/models/simple/predict?q=1", STEP, chunked=True))
    finally:
        access.handlers = handlers
        access.setLevel(level)
    assert len(seen.lines) == 2
    fast, slow = (line.split(" - ", 1) for line in seen.lines)  # client address - request and status
    assert fast[0].startswith("127.0.0.1:")
    assert fast[1] == slow[1] == '"POST /v1/models/simple/predict?q=1 HTTP/1.1" 200'


def test_a_request_in_flight_finishes_when_the_server_stops(make_server: Any, served: list[str]) -> None:
    stopping = make_server()
    app = stopping.app
    release = threading.Event()
    original = app.serving.service.predict

    async def held_predict(*args: Any, **kwargs: Any) -> Any:
        import asyncio

        while not release.is_set():
            await asyncio.sleep(0.01)
        return await original(*args, **kwargs)

    app.serving.service.predict = held_predict  # type: ignore[method-assign]
    with socket.create_connection(("127.0.0.1", stopping.port), timeout=10) as sock:
        sock.sendall(post("/v1/models/simple/predict", STEP))
        deadline = time.monotonic() + 5
        while not served and time.monotonic() < deadline:
            time.sleep(0.01)
        stopper = threading.Thread(target=stopping.stop)
        stopper.start()
        time.sleep(0.2)
        release.set()
        (reply,) = read_responses(sock, 1)
        stopper.join(timeout=30)
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert not stopper.is_alive()


def test_an_endpoint_that_fails_answers_500_and_closes(
    server: ServerThread, served: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.app, "serve_hot", broken)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post("/v1/models/simple/predict", STEP))
        (reply,) = read_responses(sock, 1)
        assert (reply.status, reply.body, reply.headers["connection"]) == (500, b"Internal Server Error", "close")
        assert sock.recv(65536) == b""
    assert len(served) == 1
