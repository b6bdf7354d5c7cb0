"""Issue 12, item 4: slow and oversized clients. A request's headers and body must arrive within request_timeout_s
(slowloris, a body shorter than its Content-Length, a connection that sends nothing: 408 and closed), and headers
are bounded in size and count (431 and closed). The deadlines are short through the settings: seconds in all."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest
from app_harness import ServerThread

TIMEOUT_S = 0.5


@pytest.fixture
def bounded(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(request_timeout_s=TIMEOUT_S, max_header_bytes=4096, max_headers=20)


def _connect(server: ServerThread) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_slowloris_headers_get_408_and_a_closed_connection(bounded: ServerThread) -> None:
    with _connect(bounded) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/models/gru/predict HTTP/1.1\r\nHost: x\r\n")
        reply = b""
        for i in range(20):  # one header every 0.1 s, never the end of the headers
            try:
                sock.sendall(b"X-Slow-%d: y\r\n" % i)
            except OSError:
                break
            time.sleep(0.1)
        reply = _read_all(sock)
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:100]
    assert TIMEOUT_S * 0.8 < elapsed < TIMEOUT_S + 2.5, elapsed


def test_a_body_shorter_than_its_content_length_is_cut_off(bounded: ServerThread) -> None:
    with _connect(bounded) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/models/gru/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"inputs": '
        )
        reply = _read_all(sock)
        elapsed = time.monotonic() - started
    # the app has started (it waits for the body): the connection is closed, the app sees a disconnect
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408 "), reply[:100]
    assert elapsed < TIMEOUT_S + 2.0, elapsed


def test_a_connection_that_sends_nothing_is_closed(bounded: ServerThread) -> None:
    with _connect(bounded) as sock:
        started = time.monotonic()
        reply = _read_all(sock)
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert elapsed < TIMEOUT_S + 2.0, elapsed


@pytest.mark.parametrize(
    "headers",
    [
        {"x-big": "a" * 5000},  # past max_header_bytes
        {f"x-h{i}": "1" for i in range(25)},  # past max_headers
    ],
)
def test_oversized_headers_get_431(bounded: ServerThread, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=bounded.url, timeout=10) as client:
        reply = client.post("/v1/sessions", json={"model": "gru"}, headers=headers)
        assert reply.status_code == 431, reply.text
        assert client.get("/v1/sessions").json()["sessions"] == []  # nothing was created
        # a normal request on a new connection is served
        assert client.get("/v1/models").status_code == 200


def test_a_prompt_client_is_not_affected(bounded: ServerThread) -> None:
    with httpx.Client(base_url=bounded.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/v1/models").status_code == 200
            time.sleep(TIMEOUT_S * 0.6)  # keep-alive gaps below and past the deadline together
        sid = client.post("/v1/sessions", json={"model": "gru"}).json()["session_id"]
        time.sleep(TIMEOUT_S * 1.5)  # an idle keep-alive connection past the deadline: closed, httpx reconnects
        assert client.post(f"/v1/sessions/{sid}/step", json={"inputs": [[[0.1, 0.2, 0.3]]]}).status_code == 200


def test_a_websocket_outlives_the_request_deadline(bounded: ServerThread) -> None:
    from websockets.sync.client import connect

    with httpx.Client(base_url=bounded.url, timeout=10) as client:
        sid = client.post("/v1/sessions", json={"model": "gru"}).json()["session_id"]
    with connect(f"{bounded.ws_url}/v1/sessions/{sid}/stream") as ws:
        time.sleep(TIMEOUT_S * 2.5)
        ws.send('{"inputs": [[[0.1, 0.2, 0.3]]]}')
        assert '"step":1' in str(ws.recv(timeout=10)).replace(" ", "")


def test_a_websocket_frame_that_is_not_utf8_is_logged_on_one_line(bounded: ServerThread) -> None:
    import base64
    import logging
    import os

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        with httpx.Client(base_url=bounded.url, timeout=10) as client:
            sid = client.post("/v1/sessions", json={"model": "gru"}).json()["session_id"]
            with _connect(bounded) as sock:
                key = base64.b64encode(os.urandom(16)).decode()
                sock.sendall(
                    f"GET /v1/sessions/{sid}/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
                    f"\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
                )
                assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
                payload, mask = b"\xff\xfe{", os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
                closing = _read_all(sock)
            assert closing[:1] == b"\x88" and closing[2:4] == (1007).to_bytes(2, "big")  # invalid frame payload
            assert client.get(f"/v1/sessions/{sid}").json()["step"] == 0
    finally:
        logger.removeHandler(handler)
    utf8 = [r for r in records if "UTF-8" in r.getMessage()]
    assert len(utf8) == 1
    assert utf8[0].levelno == logging.WARNING and utf8[0].exc_info is None
    assert "\n" not in utf8[0].getMessage()


def test_an_idle_websocket_is_closed_and_an_active_one_is_not(make_server: Callable[..., ServerThread]) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = make_server(ws_idle_timeout_s=0.6)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        sid = client.post("/v1/sessions", json={"model": "gru"}).json()["session_id"]
        with connect(f"{server.ws_url}/v1/sessions/{sid}/stream") as ws:
            for _ in range(4):  # a message every 0.3 s keeps it open past the timeout
                ws.send('{"inputs": [[[0.1, 0.2, 0.3]]]}')
                ws.recv(timeout=10)
                time.sleep(0.3)
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert time.monotonic() - started < 2.0
            assert ws.close_code == 1001
        assert client.get(f"/v1/sessions/{sid}").json()["step"] == 4  # the session stays


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    make_server: Callable[..., ServerThread],
) -> None:
    """uvicorn's keep-alive timeout, kept by the connection's one timer (not a timer per response): an idle
    connection is closed after it, a connection whose requests keep coming is not."""
    server = make_server(request_timeout_s=5.0)
    server.server.config.timeout_keep_alive = 1  # read by each new connection
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(server) as sock:
        for _ in range(4):  # 2 s of requests 0.5 s apart, on one connection
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.5)
        sock.sendall(request)
        started = time.monotonic()
        reply = _read_all(sock)  # the response, then the server's close once the connection idled 1 s
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:100]
    assert 0.8 < elapsed < 3.0, elapsed
