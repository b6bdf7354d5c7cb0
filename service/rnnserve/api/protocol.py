"""uvicorn's httptools protocol, with a fast path for the hot routes and each HTTP response written in one piece.

A small POST to a hot route (a session step, a predict, a /v2 infer: `EdgeApp.hot_posts`) with its Content-Length
is served by a `HotCycle` instead of uvicorn's `RequestResponseCycle`: the body is gathered as the parser delivers
it, and only then is the endpoint started, with one `receive` that returns the whole body and a `send` that writes
the head and the body together. What the fast path saves is uvicorn's per-request machinery: the cycle object and
its `asyncio.Event`, the awaits of a body that is already there, the per-header checks of a response the app made
itself, and a second match of the route. About 13% of the server's CPU on a one-timestep JSON step
(bench/README.md). Everything else (other routes, bodies without a length or above `HOT_BODY_MAX`, `Expect:
100-continue`, HTTP/1.0, escaped paths, a server with CORS or a root path) goes through uvicorn's cycle as before;
the answers are the same either way (tests/service/test_hot_cycle.py).

For the rest of uvicorn's cycle:

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
import time
from collections.abc import Callable
from typing import Any, cast

import httptools
from starlette.types import Message
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol  # httptools: uvicorn[standard]
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from rnnserve.api.edge import EdgeApp, HotRoute
from rnnserve.settings import Settings

_HTTP11 = b"HTTP/1.1 "
_END_OF_HEAD = b"\r\n\r\n"
HOT_BODY_MAX = 64 * 1024
"""The largest body (its Content-Length) the fast path takes (`HotCycle`): a step's size, where the per-request
machinery is most of the cost. Bigger ones, and bodies without a length, go through uvicorn's cycle, which hands
the app the body as it arrives (so a request refused for its key is answered before its body is read)."""


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

    def is_closing(self) -> bool:  # asked after every response: not through __getattr__
        return self._transport.is_closing()

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


class HotCycle:
    """The request/response cycle of a POST to a hot route (`EdgeApp.hot_posts`), in place of uvicorn's
    `RequestResponseCycle`: the protocol gathers the whole body first (at most `HOT_BODY_MAX` bytes, declared by
    Content-Length) and then starts the endpoint (`EdgeApp.serve_hot`), whose one `receive` returns it; the response
    head and body go out in one write. No per-request event, no message queue, no header re-checks: the endpoints
    are the app's own, they answer with a Content-Length and header values the server made.

    It keeps what the protocol and uvicorn's server read of a cycle (`response_started`, `response_complete`,
    `keep_alive`, `disconnected`, `message_event.set()`, `run_asgi`), so pipelining, graceful shutdown, the request
    deadline and a client leaving mid-request work as with uvicorn's cycle."""

    __slots__ = (
        "protocol",
        "scope",
        "route",
        "template",
        "keep_alive",
        "chunks",
        "more_body",
        "waiting_start",
        "disconnected",
        "response_started",
        "response_complete",
        "_head",
        "_received",
        "_waiter",
    )

    def __init__(
        self, protocol: CoalescingHttpToolsProtocol, scope: Any, route: HotRoute, template: str, keep_alive: bool
    ) -> None:
        self.protocol, self.scope, self.route, self.template = protocol, scope, route, template
        self.keep_alive = keep_alive
        self.chunks: list[bytes] = []
        self.more_body = True
        self.waiting_start = False  # the protocol starts it once its body is complete
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._head: bytes | None = None
        self._received = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def message_event(self) -> HotCycle:
        """uvicorn's `connection_lost` wakes a cycle with `cycle.message_event.set()`: this one is its own event."""
        return self

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self.protocol.loop.create_future()
        await self._waiter
        self._waiter = None

    async def run_asgi(self, app: Any) -> None:
        """Serve the request (`app`: what uvicorn's pipeline hands over; the cycle knows its route)."""
        protocol = self.protocol
        try:
            if self.more_body:  # a pipelined request whose body is still arriving
                await self._wait()
                if self.disconnected:
                    return
            edge: EdgeApp = protocol.app
            await edge.serve_hot(self.scope, self.receive, self.send, self.route, self.template, time.perf_counter())
        except BaseException as exc:
            protocol.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                self.keep_alive = False  # as uvicorn's cycle: the 500 closes the connection
                await self.send(_ERROR_500_START)
                await self.send(_ERROR_500_BODY)
            else:
                protocol.transport.close()
        else:
            if not self.response_complete and not self.disconnected:
                protocol.logger.error("ASGI callable returned without completing response.")
                protocol.transport.close()

    async def receive(self) -> Message:
        if not self._received:
            self._received = True
            chunks = self.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return {"type": "http.request", "body": body, "more_body": False}
        if not (self.disconnected or self.response_complete):
            await self._wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        protocol = self.protocol
        if protocol.flow.write_paused and not self.disconnected:
            await protocol.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got {message['type']!r}")
            self.response_started = True
            status: int = message["status"]
            parts = [STATUS_LINE[status]]
            for name, value in protocol.server_state.default_headers:
                parts += (name, b": ", value, b"\r\n")
            for name, value in message.get("headers", ()):
                parts += (name, b": ", value, b"\r\n")
            parts.append(b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n")
            self._head = b"".join(parts)
            if protocol.access_log:
                scope = self.scope
                protocol.access_logger.info(
                    '%s - "%s %s HTTP/%s" %d',
                    get_client_addr(scope),
                    scope["method"],
                    get_path_with_query_string(scope),
                    scope["http_version"],
                    status,
                )
            return
        if self.response_complete:
            return
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got {message['type']!r}")
        body: bytes = message.get("body", b"")
        head = self._head
        if head is not None:
            self._head = None
            body = head + body
        transport = protocol.coalescing.transport
        transport.write(body)
        if not message.get("more_body", False):
            self.response_complete = True
            self.set()
            if not self.keep_alive:
                transport.close()
            protocol.on_response_complete()


_ERROR_500_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
}
_ERROR_500_BODY: Message = {"type": "http.response.body", "body": b"Internal Server Error"}


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
        app = self.app
        self._hot = (
            app.hot_posts() if isinstance(app, EdgeApp) and self.limit_concurrency is None else None
        )  # the fast path's matcher (`HotCycle`), None when it is off
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
        if self._hot is None or not self._take_hot(self._hot):
            super().on_headers_complete()

    # ---- the fast path: a small POST to a hot route (`HotCycle`) --------------------------------------------------

    def _take_hot(self, match: Callable[[str], tuple[HotRoute, str, dict[str, str]] | None]) -> bool:
        """Serve this request with a `HotCycle` when it is a POST to a hot route, HTTP/1.1, with a Content-Length of
        at most `HOT_BODY_MAX` and no `Expect`; else False (uvicorn's cycle serves it)."""
        parser = self.parser
        if parser.get_method() != b"POST" or self.expect_100_continue or parser.get_http_version() != "1.1":
            return False
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return False
        if length is None or not length.isdigit() or int(length) > HOT_BODY_MAX:
            return False
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            return False  # an escaped path: uvicorn's cycle decodes it
        found = match(path)
        if found is None:
            return False
        route, template, params = found
        scope = cast(dict[str, Any], self.scope)
        scope["method"] = "POST"
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = parsed.query or b""
        scope["path_params"] = params
        existing = self.cycle
        cycle = HotCycle(self, scope, route, template, parser.should_keep_alive())
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            cycle.waiting_start = True  # started in on_message_complete, with its body
        else:  # pipelined behind a response in progress: uvicorn's queue starts it after that one
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]
        return True

    def on_body(self, body: bytes) -> None:
        cycle: object = self.cycle
        if isinstance(cycle, HotCycle):
            cycle.chunks.append(body)  # at most its Content-Length, which the parser holds it to
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._began = None
        cycle: object = self.cycle
        if isinstance(cycle, HotCycle):
            cycle.more_body = False
            if cycle.waiting_start:
                cycle.waiting_start = False
                self._start_asgi_task(cycle, self.app)  # type: ignore[arg-type]
            else:
                cycle.set()  # a pipelined one that may be waiting for its body
            return
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
