"""uvicorn's httptools protocol, with each HTTP response written to the socket in one piece.

uvicorn writes a response's status line and headers (on `http.response.start`) and its body (on
`http.response.body`) as two `transport.write` calls, and uvloop sends each at once: two send syscalls, two TCP
segments and two wake-ups of the client for every small response. Here the connection's transport holds back a
response head until the next write, the body, and sends both together. On a one-timestep step that saves about
7% of the server's CPU per request (bench/README.md).

The head is held only for a final response (not `1xx`: `100 Continue` and the WebSocket handshake's `101` go out
at once) and only until the next write or close; nothing else about the protocol changes. A response whose body
comes much later (a streamed one) sends its head with its first body chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # httptools: a dependency (uvicorn[standard])

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
    `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.coalescing = CoalescingTransport(transport)  # type: ignore[arg-type]
        super().connection_made(self.coalescing)  # type: ignore[arg-type]

    def handle_websocket_upgrade(self) -> None:
        # the WebSocket protocol takes the connection over and writes whole frames: give it the socket's transport
        self.coalescing.flush()
        self.transport = self.coalescing.transport
        super().handle_websocket_upgrade()

    def on_response_complete(self) -> None:
        # a response without a body write (HEAD) goes out now, not with the next response
        self.coalescing.flush()
        super().on_response_complete()
