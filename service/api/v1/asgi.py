"""Plain ASGI plumbing for the /v1 hot path: one pass over the request headers, the body within its size limit,
and responses (problem+json included) sent without a framework in between.

The step, predict and stream handlers use it instead of FastAPI's request and response objects, whose per-request
cost exceeds the rest of a step. Errors render exactly as `service.api.problems` renders them for other routes.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

from service.api.problems import PROBLEM_JSON, error_problem, problem
from service.errors import InvalidInput, PayloadTooLarge, RnnServeError, Unauthorized
from service.settings import Settings

log = logging.getLogger(__name__)

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
_PROBLEM_JSON = PROBLEM_JSON.encode()

_OPTION_HEADERS = {
    b"x-shape": "shape",
    b"x-seq": "seq",
    b"x-return-state": "return_state",
    b"x-time-major": "time_major",
}
_WANTED = frozenset((b"content-type", b"content-length", b"authorization", b"accept", *_OPTION_HEADERS))
BINARY_OPTIONS = ("shape", "seq", "return_state", "time_major")
"""Options a binary request may give as query parameters or as X- headers."""


class ClientGone(Exception):
    """The client disconnected before its request was read: nothing is answered."""


class Head:
    """The request headers the handlers need, read in one pass (names are lower-case bytes in ASGI), and what
    they say about the body and reply formats."""

    __slots__ = ("_found", "binary_body", "binary_reply")

    def __init__(self, scope: Scope) -> None:
        found = {name: value for name, value in scope["headers"] if name in _WANTED}
        self._found = found
        content_type = found.get(b"content-type")
        # the body is raw tensor bytes (`Content-Type: application/octet-stream`)
        self.binary_body = (
            content_type is not None and content_type.partition(b";")[0].strip().lower() == b"application/octet-stream"
        )
        # answer with raw tensor bytes: asked by `Accept`, or a binary request that does not ask for JSON
        accept = found.get(b"accept", b"")
        self.binary_reply = b"application/octet-stream" in accept or (
            self.binary_body and b"application/json" not in accept
        )

    def get(self, name: bytes) -> str | None:
        value = self._found.get(name)
        return None if value is None else value.decode("latin-1")

    @property
    def authorization(self) -> str | None:
        return self.get(b"authorization")

    @property
    def content_length(self) -> str | None:
        return self.get(b"content-length")

    def options(self, scope: Scope) -> dict[str, str]:
        """The binary request options, from the query string and the X- headers (both ways must agree)."""
        found: dict[str, str] = {}
        query = scope.get("query_string") or b""
        if query:
            for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if key in BINARY_OPTIONS:
                    found[key] = value
        for header, key in _OPTION_HEADERS.items():
            value = self.get(header)
            if value is None:
                continue
            if key in found and found[key].strip() != value.strip():
                raise InvalidInput(
                    f"{key} is {found[key]!r} in the query but {value!r} in the {header.decode()} header"
                )
            found[key] = value
        return found


def authorize(settings: Settings, authorization: str | None) -> None:
    """`Unauthorized` unless `Authorization: Bearer <api_key>` matches (when the server has a key)."""
    key = settings.api_key
    if key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    valid = secrets.compare_digest(token.strip().encode(), key.get_secret_value().encode())
    if scheme.lower() != "bearer" or not valid:
        raise Unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'")


async def read_body(receive: Receive, head: Head, limit: int) -> bytes:
    """The whole body, refused with 413 once it exceeds `limit` bytes (declared or actual)."""
    declared = head.content_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body has {int(declared)} bytes; the limit is {limit}")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(
    send: Send, status: int, content_type: bytes, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    if headers:
        head.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, exc: Exception, what: str) -> int:
    """Render an exception as problem+json (a domain error's own status, else 500, logged); returns the status."""
    if isinstance(exc, RnnServeError):
        body: dict[str, Any] = error_problem(exc)
        if exc.status >= 500:
            log.warning("%s -> %d: %s", what, exc.status, exc.detail)
    else:
        log.error("%s failed", what, exc_info=exc)
        body = problem(500, f"internal error ({type(exc).__name__}); see the server log")
    headers = [(b"www-authenticate", b"Bearer")] if isinstance(exc, Unauthorized) else None
    status = int(body["status"])
    await respond(send, status, _PROBLEM_JSON, orjson.dumps(body), headers)
    return status
