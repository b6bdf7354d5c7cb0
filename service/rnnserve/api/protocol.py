"""uvicorn's httptools protocol, with each HTTP response written to the socket in one piece.

uvicorn writes a response's status line and headers (on `http.response.start`) and its body (on
`http.response.body`) as two `transport.write` calls, and uvloop sends each at once: two send syscalls, two TCP
segments and two wake-ups of the client for every small response. Here the connection's transport holds back a
response head until the next write, the body, and sends both together. On a one-timestep step that saves about
7% of the server's CPU per request (bench/README.md).

The head is held only for a final response (not `1xx`: `100 Continue` and the WebSocket handshake's `101` go out
at once) and only until the next write or close. A response whose body comes much later (a streamed one) sends its
head with its first body chunk.

The keep-alive timeout is uvicorn's, kept by the connection's one timer, which also keeps the request deadline,
instead of a timer armed after every response and cancelled by the next request's bytes
(`CoalescingHttpToolsProtocol._tick`): the same behaviour for about 1.5 us less per request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # httptools: a dependency (uvicorn[standard])

from rnnserve.settings import Settings

_HTTP11 = b"HTTP/1.1 "
_END_OF_HEAD = b"\r\n\r\n"


class CoalescingTransport:
    """A transport that sends a final response's head together with the write that follows it."""

    __slots__ = ("_transport", "_head")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data[:9] == _HTTP11 and data[9:10] != b"1" and data[-4:] == _END_OF_HEAD:
            self._head = bytes(data)
        else:
            self._transport.write(data)

    @property
    def transport(self) -> asyncio.Transport:
        """The socket's own transport."""
        return self._transport

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def __getattr__(self, name: str) -> Any:
        # everything else (extra info, flow control, set_protocol on a WebSocket upgrade) is the transport's own
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`uvicorn.run(..., http=CoalescingHttpToolsProtocol)`: uvicorn's httptools protocol over a
    `CoalescingTransport`, with bounds on what a client may make the server wait for and hold (`protocol_for`
    sets them from the settings):

    * `request_timeout_s`: a request's headers and body must arrive within this time of its first byte (and a new
      connection must start one within it), else 408 and the connection is closed: a slowloris client, or a body
      shorter than its Content-Length, holds a connection for this long at most;
    * `max_header_bytes` (the request line and headers together) and `max_headers`: past either, 431 and close.
    """

    request_timeout_s: float | None = None
    max_header_bytes: int | None = None
    max_headers: int | None = None

    def __init__(
        self,
        *args: Any,
        request_timeout_s: float | None = None,
        max_header_bytes: int | None = None,
        max_headers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout_s, self.max_header_bytes, self.max_headers = (
            request_timeout_s,
            max_header_bytes,
            max_headers,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.coalescing = CoalescingTransport(transport)  # type: ignore[arg-type]
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = False
        self._refused = False
        self._idle_since: float | None = None
        super().connection_made(self.coalescing)  # type: ignore[arg-type]
        self._began: float | None = self.loop.time()  # a new connection must start a request in time too
        self._timer = self.loop.call_later(self._next_check(), self._tick)

    # ---- the connection's one timer: the request deadline and the keep-alive timeout ------------------------------

    # uvicorn arms a keep-alive timer after every response and cancels it when the next request's bytes arrive, and a
    # request deadline would be another timer per request. Here one timer per connection serves both: a request only
    # notes when it began (and ended), a response when it completed, and the timer, when it fires, acts on what is
    # due or re-arms itself for the time left.

    def _next_check(self) -> float:
        keep_alive = float(self.timeout_keep_alive)
        return keep_alive if self.request_timeout_s is None else min(self.request_timeout_s, keep_alive)

    def _tick(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._began is not None and self.request_timeout_s is not None:  # a request (or the first) is arriving
            left = self._began + self.request_timeout_s - now
            if left <= 0:
                self._too_slow()
                return
        elif self._idle_since is not None:  # idle after a response: uvicorn's keep-alive timeout
            left = self._idle_since + self.timeout_keep_alive - now
            if left <= 0:
                self.transport.close()
                return
        else:  # a response is being made: nothing is due until it completes
            left = self._next_check()
        self._timer = self.loop.call_later(left, self._tick)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self._refuse(408, b"the request did not arrive in time")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: bytes) -> None:
        """Answer `status` with a plain-text message and close (the request is not passed to the app)."""
        self._refused = True
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.coalescing.flush()
        self.coalescing.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(message), message)
        )
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._idle_since = None
        super().data_received(data)
        if self._in_headers and not self._refused and self.max_header_bytes is not None:
            # a chunk taken whole while the headers are still coming: bound what an endless header section holds
            # (the chunk that completes them is counted exactly in on_headers_complete)
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, f"the request has more than {self.max_header_bytes} bytes of headers".encode())

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refused request's parse error (raised from on_header) is answered already
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        self._in_headers = True
        self._began = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        # the limits checked once per request, on uvicorn's own list (a Python callback per header cost more)
        self._in_headers = False
        headers = self.headers
        too_many = self.max_headers is not None and len(headers) > self.max_headers
        too_big = self.max_header_bytes is not None and (
            len(self.url) + sum([len(name) + len(value) + 4 for name, value in headers]) > self.max_header_bytes
        )
        if too_many or too_big:
            limit = f"{self.max_headers} headers" if too_many else f"{self.max_header_bytes} bytes of headers"
            self._refuse(431, f"the request has more than {limit}".encode())
            raise _Refused  # stops the parser (uvicorn answers its parse error with 400, which is skipped)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._began = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # the WebSocket protocol takes the connection over and writes whole frames: give it the socket's transport
        self._disarm()
        self.coalescing.flush()
        self.transport = self.coalescing.transport
        super().handle_websocket_upgrade()

    def on_response_complete(self) -> None:
        # uvicorn's, with the keep-alive timeout left to the connection's timer (`_tick`) instead of a new timer
        self.coalescing.flush()  # a response without a body write (HEAD) goes out now, not with the next response
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.loop.time()


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that was refused (431)."""


class OneLineClientErrors(logging.Filter):
    """A client's protocol error that uvicorn logs with a traceback (a WebSocket text frame that is not UTF-8) as one
    WARNING line: it is the client's fault, and a traceback per bad frame would let a client flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UnicodeDecodeError):
            record.msg = f"{record.getMessage()} ({exc.reason} at byte {exc.start}); the connection was closed"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_ONE_LINE = OneLineClientErrors()


def protocol_for(settings: Settings) -> Callable[..., CoalescingHttpToolsProtocol]:
    """The protocol with the settings' bounds (request_timeout_s, max_header_bytes, max_headers); also makes
    uvicorn log a client's protocol errors on one line (`OneLineClientErrors`). A partial of the module's class, not
    a class made here: uvicorn pickles it into each worker process with `--workers N`."""
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if _ONE_LINE not in uvicorn_errors.filters:
        uvicorn_errors.addFilter(_ONE_LINE)
    return functools.partial(
        CoalescingHttpToolsProtocol,
        request_timeout_s=settings.request_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )
