"""A TCP proxy for the client tests, between the client and a real server. It forwards bytes both ways and, when
armed, fails a request whose first bytes contain a marker (e.g. b"/step"):

* `cut_after_reply(marker)`: the request reaches the server, which handles it (and commits), and the proxy
  swallows the reply and closes the client's connection: the client sees a lost reply;
* `unavailable(marker, retry_after)`: the proxy answers 503 (with `Retry-After`) itself; the server sees nothing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.lock = threading.Lock()
        self.marker = b""
        self.cuts = 0  # replies still to swallow
        self.refusals = 0  # 503s still to answer
        self.retry_after: str | None = None
        self.seen: list[float] = []  # when each marked request arrived
        self.cut = 0  # replies swallowed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="client-test-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()

    def cut_after_reply(self, marker: bytes, times: int = 1) -> None:
        with self.lock:
            self.marker, self.cuts, self.refusals = marker, times, 0

    def unavailable(self, marker: bytes, times: int = 1, retry_after: str | None = None) -> None:
        with self.lock:
            self.marker, self.refusals, self.cuts, self.retry_after = marker, times, 0, retry_after

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        cut = threading.Event()
        threading.Thread(target=self._replies, args=(upstream, client, cut), daemon=True).start()
        try:
            while data := client.recv(65536):
                with self.lock:
                    marked = bool(self.marker) and self.marker in data.split(b"\r\n", 1)[0]
                    if marked:
                        self.seen.append(time.monotonic())
                    refuse = marked and self.refusals > 0
                    if refuse:
                        self.refusals -= 1
                    elif marked and self.cuts > 0:
                        self.cuts -= 1
                        cut.set()
                if refuse:
                    client.sendall(self._refusal())
                    break
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def _refusal(self) -> bytes:
        body = b'{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"proxy says wait"}'
        head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nconnection: close\r\n"
        if self.retry_after is not None:
            head += b"retry-after: " + self.retry_after.encode() + b"\r\n"
        return head + b"content-length: %d\r\n\r\n" % len(body) + body

    def _replies(self, upstream: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if cut.is_set():  # the reply of the marked request: the server has answered, the client never hears
                    with self.lock:
                        self.cut += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client, upstream)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
