"""`rnnserve.api.protocol`: each HTTP response reaches the socket in one write, and nothing else changes.

The transport is checked against a recording fake; the protocol against the real server over raw sockets, where
a response split in two writes would show up as two reads and a held head as a hang (HEAD, keep-alive, 100
Continue, a WebSocket upgrade)."""

from __future__ import annotations

import pickle
import socket
from typing import Any

import pytest
from app_harness import ServerThread
from websockets.sync.client import connect

from rnnserve.api.protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from rnnserve.cli import uvicorn_options
from rnnserve.settings import Settings

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.extra = {"peername": ("127.0.0.1", 1)}

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def test_a_response_head_goes_out_with_its_body() -> None:
    recorder = Recorder()
    transport = CoalescingTransport(recorder)  # type: ignore[arg-type]
    transport.write(HEAD)
    assert recorder.writes == []
    transport.write(b"{}")
    assert recorder.writes == [HEAD + b"{}"]


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        HEAD + b"{}",  # a head and body written together (uvicorn's 400 answers)
        b"\x81\x02{}",  # a WebSocket frame
        b"5\r\nhello\r\n",  # a chunk
    ],
)
def test_other_writes_pass_straight_through(data: bytes) -> None:
    recorder = Recorder()
    CoalescingTransport(recorder).write(data)  # type: ignore[arg-type]
    assert recorder.writes == [data]


def test_a_held_head_is_sent_on_flush_and_on_close() -> None:
    recorder = Recorder()
    transport = CoalescingTransport(recorder)  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.flush()
    assert recorder.writes == [HEAD]
    transport.flush()
    assert recorder.writes == [HEAD]
    transport.write(HEAD)
    transport.close()
    assert recorder.writes == [HEAD, HEAD] and recorder.closed


def test_everything_else_is_the_transports_own() -> None:
    transport = CoalescingTransport(Recorder())  # type: ignore[arg-type]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)


def test_the_service_runs_on_the_coalescing_protocol() -> None:
    protocol = uvicorn_options(Settings(request_timeout_s=7))["http"]
    assert protocol.func is CoalescingHttpToolsProtocol  # with the settings' request deadline and header limits
    assert protocol.keywords["request_timeout_s"] == 7
    assert pickle.loads(pickle.dumps(protocol)).keywords == protocol.keywords  # --workers N pickles it


# ---- through the real server --------------------------------------------------------------------------------------


def _exchange(server: ServerThread, requests: list[bytes], responses: int) -> list[bytes]:
    """Send `requests` on one connection; the reads until `responses` responses have arrived whole."""
    reads: list[bytes] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
        buffer = b""
        while _complete(buffer) < responses:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection after {reads!r}"
            reads.append(chunk)
            buffer += chunk
    return reads


def _complete(buffer: bytes) -> int:
    """How many whole responses (heads with content-length bodies) `buffer` holds."""
    count = 0
    while True:
        head, sep, rest = buffer.partition(b"\r\n\r\n")
        if not sep:
            return count
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return count
        count += 1
        buffer = rest[length:]


def test_a_response_arrives_in_one_read(server: ServerThread) -> None:
    reads = _exchange(server, [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"], 1)
    assert len(reads) == 1 and reads[0].startswith(b"HTTP/1.1 200 ") and reads[0].endswith(b"}")


def test_keep_alive_answers_each_request_in_order(server: ServerThread) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    reads = _exchange(server, [request, request, request], 3)
    assert b"".join(reads).count(b"HTTP/1.1 200 OK") == 3


def test_a_head_request_is_answered_at_once(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = sock.recv(65536)  # a head held until the next response would time out here
        assert data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"}"):
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 OK") and data.count(b"HTTP/1.1") == 1


def test_expect_100_continue(server: ServerThread) -> None:
    body = b'{"model": "rnn"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"Expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 "), data


def test_the_websocket_upgrade_still_works(server: ServerThread) -> None:
    with connect(f"ws://127.0.0.1:{server.port}/v1/sessions/unknown/stream", open_timeout=10) as ws:
        reply = ws.recv(timeout=10)
    assert "not found" in str(reply).lower() or "404" in str(reply)


def test_the_websocket_protocol_gets_the_sockets_own_transport(server: ServerThread) -> None:
    from rnnserve.api.protocol import CoalescingHttpToolsProtocol

    seen: list[object] = []
    original = CoalescingHttpToolsProtocol.handle_websocket_upgrade

    def spy(self: CoalescingHttpToolsProtocol) -> None:
        original(self)
        seen.append(self.transport)

    CoalescingHttpToolsProtocol.handle_websocket_upgrade = spy  # type: ignore[method-assign]
    try:
        with connect(f"ws://127.0.0.1:{server.port}/v1/sessions/unknown/stream", open_timeout=10) as ws:
            ws.recv(timeout=10)
    finally:
        CoalescingHttpToolsProtocol.handle_websocket_upgrade = original  # type: ignore[method-assign]
    assert seen and not isinstance(seen[0], CoalescingTransport)
