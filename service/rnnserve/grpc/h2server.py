"""gRPC over HTTP/2 on the h2 library: the `GRPCInferenceService` of `InferenceServicer`, served on the event loop
of the HTTP server without grpcio's core.

Why: grpcio's asyncio server hands every message between its C core's poller thread and the event loop, and a bare
echo stream costs it ~105 us of server CPU per message (`python -m bench.grpc_floor`), more than a whole HTTP step
of rnnserve (~80 us). h2 is HTTP/2's state machine in pure Python on the loop's own socket: the same echo costs
~30 us a message. The gRPC layer on top is the wire protocol's small part (https://grpc.io/docs/what-is-grpc/
core-concepts and the HTTP/2 protocol document):

* a call is an HTTP/2 stream: `POST /<service>/<method>` with `content-type: application/grpc[+proto]`; its
  metadata are the request's other headers (`-bin` keys base64, as grpcio gives them as bytes);
* messages, both ways, are length-prefixed (`flag u8 | length u32 BE | bytes`; flag 1 = compressed, refused here:
  the server says `grpc-accept-encoding: identity`, and clients then send none);
* the call ends with trailers `grpc-status` and `grpc-message` (percent-encoded); an error before any message is a
  trailers-only response;
* `grpc-timeout` (`<n><unit>`) cancels the call past its deadline (DEADLINE_EXCEEDED).

What the HTTP/2 layer does (settings, PING, flow control windows, GOAWAY) is h2's. Responses written during one
event-loop iteration leave in one socket write, each stream's as far as its flow-control window allows (the rest
when the client's WINDOW_UPDATE arrives). A call's handler runs as a task; a stream's requests reach it through a
queue, and its responses are written as it yields them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import struct
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

log = logging.getLogger(__name__)

_PREFIX = struct.Struct(">BI")
_RESERVED = frozenset({"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "user-agent"})
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_RESPONSE_HEADERS = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity"),
]
_MESSAGE_SAFE = " !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"
"""What `grpc-message` keeps as is: printable ASCII but `%` (the rest is percent-encoded, as the protocol says)."""
_WINDOW = 4 * 1024 * 1024
"""The receive window this server opens per stream and for the connection (h2's default, 64 KiB, would make a
client wait for WINDOW_UPDATEs on any large request)."""


@dataclass(frozen=True)
class Method:
    """One method of the service: how to read its requests, answer them and write its responses."""

    request: type[Message]
    handler: Callable[..., Any]
    client_streaming: bool
    server_streaming: bool


class Abort(Exception):
    """Raised by `Context.abort`: the call ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Context:
    """What a servicer method sees of its call (the part of `grpc.aio.ServicerContext` rnnserve's servicer uses)."""

    __slots__ = ("_metadata",)

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Abort(code, details)


def methods_of(service: ServiceDescriptor, servicer: object) -> dict[str, Method]:
    """`/package.Service/Method` -> Method, for every method of `service` (from the generated module's DESCRIPTOR),
    answered by the servicer's method of the same name."""
    return {
        f"/{service.full_name}/{method.name}": Method(
            GetMessageClass(method.input_type),
            getattr(servicer, method.name),
            method.client_streaming,
            method.server_streaming,
        )
        for method in service.methods
    }


class _Requests:
    """A streaming call's requests, as the handler iterates them (ends when the client half-closes).

    HTTP/2 flow control bounds what a client can make the server hold: the bytes of a stream's requests are
    acknowledged (the client's window opened again) only while fewer than `QUEUED` requests wait here for the
    handler, so a client that sends faster than the handler reads stalls on its window, as with grpcio."""

    QUEUED = 256

    __slots__ = ("queue", "unacknowledged", "acknowledge")

    def __init__(self, acknowledge: Callable[[], None]) -> None:
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.unacknowledged = 0  # flow-controlled bytes received and not yet acknowledged
        self.acknowledge = acknowledge

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Message:
        message = await self.queue.get()
        if self.unacknowledged and self.queue.qsize() < self.QUEUED:
            self.acknowledge()
        if message is None:
            raise StopAsyncIteration
        return message


class _Call:
    """One HTTP/2 stream: its request bytes as they arrive, its handler's task, its responses still to send."""

    __slots__ = ("stream_id", "method", "context", "buffer", "requests", "request", "task", "out", "trailers", "timer")

    def __init__(self, stream_id: int, method: Method, context: Context) -> None:
        self.stream_id: int = stream_id
        self.method = method
        self.context = context
        self.buffer = bytearray()
        self.requests: _Requests | None = None
        self.request: Message | None = None
        self.task: asyncio.Task[None] | None = None
        self.out = bytearray()  # length-prefixed responses not yet given to h2 (flow control)
        self.trailers: list[tuple[bytes, bytes]] | None = None  # sent once `out` is empty
        self.timer: asyncio.TimerHandle | None = None


class Connection(asyncio.Protocol):
    """One client connection: h2's state machine, the calls on it, one socket write per loop iteration."""

    def __init__(
        self,
        methods: dict[str, Method],
        max_message_bytes: int,
        connections: set[Connection],
        first_bytes_s: float | None = None,
    ) -> None:
        self.methods = methods
        self.max_message_bytes = max_message_bytes
        self.first_bytes_s = first_bytes_s
        self._silent: asyncio.TimerHandle | None = None  # closes a connection that never sends a byte
        self.connections = connections
        self.calls: dict[int, _Call] = {}
        self._sending: dict[int, _Call] = {}  # the calls with responses or trailers still to give h2
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self._flush_scheduled = False

    # ---- asyncio.Protocol -----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        if self.first_bytes_s is not None:
            self._silent = self.loop.call_later(self.first_bytes_s, self._close)
        self.h2.initiate_connection()
        self.h2.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            }
        )
        self.h2.increment_flow_control_window(_WINDOW - 65535)  # the connection's own window
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._silent is not None:
            self._silent.cancel()
        for call in list(self.calls.values()):
            self._drop(call)

    def data_received(self, data: bytes) -> None:
        if self._silent is not None:
            self._silent.cancel()
            self._silent = None
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self._close()
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self._data(event)
            elif isinstance(event, h2.events.RequestReceived):
                self._begin(event)
            elif isinstance(event, h2.events.StreamEnded):
                self._half_closed(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self._schedule_flush()
            elif isinstance(event, h2.events.StreamReset):
                call = self.calls.get(event.stream_id)
                if call is not None:
                    self._drop(call)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._close()
                return
        self._flush()

    # ---- calls ------------------------------------------------------------------------------------------------

    def _begin(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        headers = dict(event.headers or ())
        path = headers.get(b":path", b"").decode("latin-1")
        if headers.get(b":method") != b"POST" or not headers.get(b"content-type", b"").startswith(b"application/grpc"):
            self.h2.send_headers(stream_id, [(b":status", b"415")], end_stream=True)
            return
        method = self.methods.get(path)
        if method is None:
            self._trailers_only(stream_id, grpc.StatusCode.UNIMPLEMENTED, f"unknown method {path}")
            return
        if headers.get(b"grpc-encoding", b"identity") != b"identity":
            self._trailers_only(stream_id, grpc.StatusCode.UNIMPLEMENTED, "compressed messages are not accepted")
            return
        call = _Call(stream_id, method, Context(_metadata(event.headers or ())))
        if method.client_streaming:
            call.requests = _Requests(functools.partial(self._acknowledge, call))
        self.calls[stream_id] = call
        self.h2.send_headers(stream_id, _RESPONSE_HEADERS)
        timeout = _timeout(headers.get(b"grpc-timeout"))
        if timeout is not None:
            call.timer = self.loop.call_later(timeout, self._deadline, call)
        if method.client_streaming:
            call.task = self.loop.create_task(self._run(call))

    def _data(self, event: h2.events.DataReceived) -> None:
        call = self.calls.get(event.stream_id)
        if call is None or call.trailers is not None or call.requests is None:
            # a unary request (read whole, at most max_message_bytes), or a call that has ended
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if call is None or call.trailers is not None:
                return
        requests = call.requests
        if requests is not None:
            requests.unacknowledged += event.flow_controlled_length
        buffer = call.buffer
        buffer += event.data or b""
        while len(buffer) >= 5:
            compressed, size = _PREFIX.unpack_from(buffer)
            if size > self.max_message_bytes:
                self._fail(call, grpc.StatusCode.RESOURCE_EXHAUSTED, f"a message of {size} bytes exceeds the limit")
                return
            if len(buffer) < 5 + size:
                return
            data = bytes(buffer[5 : 5 + size])
            del buffer[: 5 + size]
            if compressed:
                self._fail(call, grpc.StatusCode.UNIMPLEMENTED, "compressed messages are not accepted")
                return
            try:
                message = call.method.request.FromString(data)
            except DecodeError as exc:
                self._fail(call, grpc.StatusCode.INTERNAL, f"the request cannot be parsed: {exc}")
                return
            if requests is not None:
                requests.queue.put_nowait(message)
            elif call.request is None:
                call.request = message
            else:
                self._fail(call, grpc.StatusCode.UNIMPLEMENTED, "a unary method takes one request message")
                return
        if requests is not None and requests.unacknowledged and requests.queue.qsize() < requests.QUEUED:
            self._acknowledge(call)

    def _acknowledge(self, call: _Call) -> None:
        """Open the client's windows again by the stream's bytes taken so far."""
        requests = call.requests
        if requests is None or not requests.unacknowledged:
            return
        size, requests.unacknowledged = requests.unacknowledged, 0
        with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
            self.h2.acknowledge_received_data(size, call.stream_id)
        self._schedule_flush()

    def _half_closed(self, stream_id: int) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        if call.requests is not None:
            call.requests.queue.put_nowait(None)
        elif call.task is None:
            if call.request is None:
                self._fail(call, grpc.StatusCode.UNIMPLEMENTED, "a unary method takes one request message")
                return
            call.task = self.loop.create_task(self._run(call))

    async def _run(self, call: _Call) -> None:
        """The handler, its responses written as they come, then the status."""
        method = call.method
        code, details = grpc.StatusCode.OK, ""
        try:
            if method.client_streaming:
                answer = method.handler(call.requests, call.context)
            else:
                answer = method.handler(call.request, call.context)
            if method.server_streaming:
                try:
                    async for response in answer:
                        self._send(call, response.SerializeToString())
                finally:
                    await answer.aclose()  # at once, also when the call is cancelled
            else:
                self._send(call, (await answer).SerializeToString())
        except Abort as exc:
            code, details = exc.code, exc.details
        except asyncio.CancelledError:
            return  # reset by the client, the connection lost, or the deadline (which sent its own status)
        except Exception:
            log.exception("gRPC %s failed", call.method.handler.__name__)
            code, details = grpc.StatusCode.INTERNAL, "internal error"
        self._finish(call, code, details)

    def _deadline(self, call: _Call) -> None:
        call.timer = None
        if call.task is not None:
            call.task.cancel()
        self._fail(call, grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed")
        self._flush()

    def _fail(self, call: _Call, code: grpc.StatusCode, details: str) -> None:
        """End `call` now with `code` (its handler, if running, is cancelled)."""
        if call.task is not None and not call.task.done():
            call.task.cancel()
        call.out.clear()
        self._finish(call, code, details)

    def _finish(self, call: _Call, code: grpc.StatusCode, details: str) -> None:
        if call.trailers is None:
            call.trailers = _status(code, details)
            self._sending[call.stream_id] = call
            self._schedule_flush()

    def _trailers_only(self, stream_id: int, code: grpc.StatusCode, details: str) -> None:
        """An error before any message: one HEADERS frame with the status, ending the stream."""
        self.h2.send_headers(stream_id, [*_RESPONSE_HEADERS, *_status(code, details)], end_stream=True)

    def _drop(self, call: _Call) -> None:
        self.calls.pop(call.stream_id, None)
        self._sending.pop(call.stream_id, None)
        if call.timer is not None:
            call.timer.cancel()
        if call.task is not None and not call.task.done():
            call.task.cancel()

    # ---- writing ------------------------------------------------------------------------------------------------

    def _send(self, call: _Call, data: bytes) -> None:
        call.out += _PREFIX.pack(0, len(data))
        call.out += data
        self._sending[call.stream_id] = call
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Give h2 what each call has to send, as far as flow control allows, and write it in one piece."""
        self._flush_scheduled = False
        if self.transport is None or self.transport.is_closing():
            return
        h2conn = self.h2
        for call in list(self._sending.values()):  # a call waiting for its window stays there until it opens
            out = call.out
            try:
                while out:
                    window = min(h2conn.local_flow_control_window(call.stream_id), h2conn.max_outbound_frame_size)
                    if window <= 0:
                        break
                    chunk = bytes(out[:window])
                    del out[:window]
                    h2conn.send_data(call.stream_id, chunk)
                if out:
                    continue
                if call.trailers is not None:
                    h2conn.send_headers(call.stream_id, call.trailers, end_stream=True)
                    self._drop(call)
                else:
                    del self._sending[call.stream_id]
            except h2.exceptions.StreamClosedError:
                self._drop(call)
        data = h2conn.data_to_send()
        if data:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def shutdown(self, grace: float) -> None:
        """GOAWAY (no new calls), let the calls in progress finish for `grace` seconds, then close."""
        if self.transport is None or self.transport.is_closing():
            return
        self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR)
        self._flush()
        tasks = [call.task for call in self.calls.values() if call.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        self._flush()
        self._close()


def _timeout(value: bytes | None) -> float | None:
    """`grpc-timeout`'s seconds (`<digits><unit>`), None without one or for one that cannot be read."""
    text = (value or b"").decode("latin-1")
    if not text or text[-1] not in _TIMEOUT_UNITS or not text[:-1].isdigit():
        return None
    return int(text[:-1]) * _TIMEOUT_UNITS[text[-1]]


def _metadata(headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str | bytes], ...]:
    """A call's metadata from its request headers, as grpcio gives it: `-bin` values decoded from base64 (bytes),
    the others as text; HTTP/2's pseudo-headers and gRPC's own headers left out."""
    metadata: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        key = name.decode("latin-1")
        if key.startswith(":") or key in _RESERVED:
            continue
        if key.endswith("-bin"):
            metadata.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
        else:
            metadata.append((key, value.decode("latin-1")))
    return tuple(metadata)


def _status(code: grpc.StatusCode, details: str) -> list[tuple[bytes, bytes]]:
    """The trailers that end a call with `code`."""
    trailers = [(b"grpc-status", b"%d" % code.value[0])]
    if details:
        trailers.append((b"grpc-message", urllib.parse.quote(details, safe=_MESSAGE_SAFE).encode("ascii")))
    return trailers


class Listening:
    """A listening socket and the connections it accepted."""

    def __init__(self, server: asyncio.Server, connections: set[Connection]) -> None:
        self.server = server
        self.connections = connections
        self.port: int = server.sockets[0].getsockname()[1]

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; each connection says GOAWAY, its calls in progress get `grace` seconds, then it closes."""
        self.server.close()
        await asyncio.gather(*(connection.shutdown(grace) for connection in list(self.connections)))
        await self.server.wait_closed()


async def serve(
    host: str,
    port: int,
    methods: dict[str, Method],
    max_message_bytes: int,
    *,
    reuse_port: bool,
    first_bytes_s: float | None = None,
) -> Listening:
    """Listen on host:port (0 picks a free port) and serve `methods` on every connection. A connection that sends
    nothing (not even HTTP/2's preface) within `first_bytes_s` is closed."""
    connections: set[Connection] = set()
    server = await asyncio.get_running_loop().create_server(
        lambda: Connection(methods, max_message_bytes, connections, first_bytes_s),
        host,
        port,
        reuse_port=reuse_port or None,
    )
    return Listening(server, connections)
