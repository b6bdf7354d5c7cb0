"""The edge: what every route does around its own work, written once.

* auth: `authorize` (the API key, `Authorization: Bearer <key>`);
* limits: `read_body` (the key, then the request body within `max_body_bytes`, declared or actual), `check_size`
  (a WebSocket message), `decode_content` (a `Content-Encoding`d body, bounded once expanded);
* content types: `Head` reads the request headers once and says whether the body is raw tensor bytes and whether
  the reply should be (`application/octet-stream`, else JSON);
* errors: `describe` turns any exception into a problem object (a domain error's own, else a logged 500), which
  is rendered as problem+json (RFC 9457) on /v1 and everywhere else, as `{"error": ...}` on /v2
  (`respond_error` for the plain ASGI endpoints, `install_error_handlers` for FastAPI's routes), and on a
  WebSocket stream as a text reply, with the stream's close codes (`ws_accept`, `ws_refuse`, `ws_serve`);
* request metrics: `EdgeApp` counts every HTTP request, `ws_serve` every WebSocket message, by route template (and,
  on a server with keys, by tenant);
* CORS, when `cors_allow_origins` turns it on: `EdgeApp` answers preflights and adds the Access-Control-* headers to
  every response, hot routes and errors included (`rnnserve.api.cors`).

`EdgeApp` is the application: FastAPI, with the hot routes of one table (`HotRoute`, declared in
`rnnserve.api.routes`) dispatched to their plain ASGI endpoints before FastAPI's middleware, routing and dependency
injection, which cost more per request than a whole batched step. The same table registers those routes with
FastAPI (so that routing answers 404 and 405 around them, and serves them the same way without the dispatcher)
and describes them in the OpenAPI schema. Hot endpoints answer through the same functions as FastAPI's routes
(`read_body`, `describe`), so a request is answered alike whichever way it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, cast

import numpy as np
import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from rnnserve.api.cors import Cors
from rnnserve.errors import (
    CorsRefused,
    InvalidInput,
    PayloadTooLarge,
    RnnServeError,
    SessionNotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from rnnserve.inference import InferenceService
from rnnserve.metrics import Metrics
from rnnserve.settings import Settings
from rnnserve.tenants import authenticate, current_tenant, tag

log = logging.getLogger(__name__)

Endpoint = Callable[[Scope, Receive, Send], Awaitable[int]]
"""A plain ASGI endpoint that returns the HTTP status it answered (101 for a WebSocket), for the metrics."""


# ---- the app's objects --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Serving:
    """The app's settings and metrics, and the data plane once the lifespan has opened its resources; what the
    settings make of CORS (None: off) and whether requests are counted by tenant (a server with keys).

    Read with plain attribute lookups (`app.serving`): a lookup on Starlette's `app.state` is a failed normal lookup
    and then `State.__getattr__`, and the hot endpoints read it on every request (bench/README.md has the cost)."""

    settings: Settings
    metrics: Metrics
    service: InferenceService = None  # type: ignore[assignment]  # set by the lifespan before any request
    cors: Cors | None = field(init=False, default=None)
    by_tenant: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.cors = Cors.of(self.settings)
        self.by_tenant = self.settings.auth_required


def serving(conn: HTTPConnection) -> Serving:
    return conn.app.serving  # type: ignore[no-any-return]


# ---- auth ---------------------------------------------------------------------------------------------------------


def authorize(settings: Settings, authorization: str | None) -> str | None:
    """The tenant whose key `Authorization: Bearer <key>` carries, set for the rest of the request
    (`rnnserve.tenants`); `Unauthorized` for a missing or unknown key. None on a server without keys."""
    return authenticate(settings, authorization)


# ---- headers and content types ------------------------------------------------------------------------------------

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
PROBLEM_JSON = "application/problem+json"
_BASE_HEADERS = (b"content-type", b"content-length", b"authorization", b"accept")


def wanted_headers(*names: bytes) -> frozenset[bytes]:
    """The headers a `Head` keeps: those the edge reads, and `names` (lower-case, as ASGI gives them)."""
    return frozenset((*_BASE_HEADERS, *names))


_WANTED = wanted_headers()


class Head:
    """The request headers an endpoint needs, read in one pass (names are lower-case bytes in ASGI), and what
    they say about the body and reply formats: the body is raw tensor bytes when its `Content-Type` is
    `application/octet-stream`, else JSON; the reply is raw bytes when `Accept` asks for them, or for a binary
    request that does not ask for JSON."""

    __slots__ = ("_found", "binary_body", "binary_reply", "type_refused")

    def __init__(self, scope: Scope, wanted: frozenset[bytes] = _WANTED) -> None:
        found: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # a loop: a comprehension would build a closure over `wanted`
            if name in wanted:
                found[name] = value  # noqa: PERF403
        self._found = found
        content_type = found.get(b"content-type")
        main = None if content_type is None else content_type.partition(b";")[0].strip().lower()
        self.binary_body = main == OCTET_STREAM
        # A JSON body must say so (a text/plain or form body is what a web page may send cross-site without asking):
        # no Content-Type is taken on /v2 only, whose Triton clients send none.
        self.type_refused = not self.binary_body and (
            main != JSON and not main.endswith(b"+json") if main is not None else not _on_v2(scope)
        )
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


# ---- limits -------------------------------------------------------------------------------------------------------


def too_large(what: str, limit: int, size: int | None = None, unit: str = "bytes") -> PayloadTooLarge:
    """The 413 for `what` past `limit` bytes; its message names the limit (and the size, when known)."""
    if size is None:
        return PayloadTooLarge(f"{what} exceeds the limit of {limit} bytes")
    return PayloadTooLarge(f"{what} has {size} {unit}; the limit is {limit} bytes")


def check_size(what: str, size: int, limit: int, unit: str = "bytes") -> None:
    """`PayloadTooLarge` when `size` exceeds `limit` (a WebSocket message, whole once received)."""
    if size > limit:
        raise too_large(what, limit, size, unit)


async def read_body(receive: Receive, head: Head, settings: Settings, *, authorized: bool = False) -> bytes:
    """What every HTTP route does first: the API key (unless `authorized` already), then the whole body, refused
    with 413 once it exceeds `max_body_bytes` (declared or actual); `ClientDisconnect` when the client leaves
    first."""
    if not authorized and settings.auth_required:
        authorize(settings, head.authorization)
    limit = settings.max_body_bytes
    content_length = head.content_length
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large("the body", limit, int(content_length))
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large("the body", limit)
        if body and head.type_refused:
            raise _unsupported(head)
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large("the body", limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            if head.type_refused:
                raise _unsupported(head)
            return b"".join(chunks)


def _unsupported(head: Head) -> UnsupportedMediaType:
    given = head.get(b"content-type")
    return UnsupportedMediaType(
        f"a JSON body needs Content-Type: application/json (raw tensor bytes: application/octet-stream), "
        f"got {'none' if given is None else repr(given[:60])}"
    )


def _on_v2(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :].startswith(V2_PREFIX) if root and path.startswith(root) else path.startswith(V2_PREFIX)


_COMPRESSIONS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # deflate = zlib format, as clients send


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its `Content-Encoding` (gzip, deflate, identity) undone, at most `limit` bytes once expanded."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    wbits = _COMPRESSIONS.get(name)
    if wbits is None:
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    decompressor = zlib.decompressobj(wbits)
    try:
        expanded = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the {name} body cannot be decompressed: {exc}") from None
    if len(expanded) > limit or decompressor.unconsumed_tail:
        raise too_large("the decompressed body", limit)
    if not decompressor.eof:
        raise InvalidInput(f"the {name} body is truncated")
    return expanded


# ---- replies ------------------------------------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """JSON, numpy arrays and scalars included (orjson)."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _default(value: Any) -> Any:
    """What orjson cannot take natively: non-contiguous or non-native-order arrays, numpy scalars of other types."""
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


async def respond(
    send: Send, status: int, content_type: bytes, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    if headers:
        head.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


# ---- errors -------------------------------------------------------------------------------------------------------

Problem = dict[str, Any]
Form = Literal["problem", "v2"]
"""How an HTTP route answers errors: problem+json (/v1 and everything else) or the Open Inference Protocol's
`{"error": ...}` (/v2)."""
PROBLEM: Form = "problem"
V2: Form = "v2"
V2_PREFIX = "/v2"
CLIENT_GONE = 499  # nginx's "client closed request": counted, never sent


def problem(status: int, detail: str, *, title: str | None = None, type_: str = "about:blank", **extra: Any) -> Problem:
    """A problem object; `title` defaults to the status phrase."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def error_problem(exc: RnnServeError) -> Problem:
    """The problem object of a domain error, with its extra members (e.g. `step` on a seq conflict)."""
    return problem(int(exc.status), exc.detail, title=exc.title, type_=exc.type, **exc.extra)


def describe(exc: BaseException, what: str) -> Problem:
    """The problem an exception answers: a domain error's own (logged when 5xx), else a 500 (logged with its
    traceback) that names only the exception's type. `what` names the request in the log."""
    if isinstance(exc, RnnServeError):
        if exc.status >= 500:
            log.warning("%s -> %d: %s", what, exc.status, exc.detail)
        return error_problem(exc)
    log.error("%s failed", what, exc_info=exc)
    return problem(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__}); see the server log")


def form_of(path: str) -> Form:
    return V2 if path.startswith(V2_PREFIX) else PROBLEM


def encode_error(body: Problem, form: Form) -> tuple[str, bytes]:
    """(content type, bytes) of a problem in a route's error form."""
    if form == V2:
        return "application/json", orjson.dumps({"error": body["detail"]})
    return PROBLEM_JSON, orjson.dumps(body)


RETRY_AFTER_S = {HTTPStatus.TOO_MANY_REQUESTS: "5", HTTPStatus.SERVICE_UNAVAILABLE: "1"}
"""`Retry-After` of a 429 (a quota or the session cap: sessions expire or are deleted) and a 503 (a model loading, the
store down: usually brief), in seconds."""


def _challenge(exc: BaseException) -> dict[str, str] | None:
    """The headers an error answers with besides its body: `WWW-Authenticate` on a 401, `Retry-After` on 429 and
    503."""
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RnnServeError) and exc.status in RETRY_AFTER_S:
        return {"Retry-After": RETRY_AFTER_S[exc.status]}
    return None


def error_response(body: Problem, form: Form, headers: dict[str, str] | None = None) -> Response:
    content_type, payload = encode_error(body, form)
    return Response(payload, status_code=body["status"], media_type=content_type, headers=headers)


def problem_response(body: Problem, headers: dict[str, str] | None = None) -> Response:
    return error_response(body, PROBLEM, headers)


async def respond_error(send: Send, exc: Exception, form: Form, scope: Scope) -> int:
    """Answer a plain ASGI request with its error (see `describe`); returns the status."""
    body = describe(exc, f"{scope['method']} {scope['path']}")
    content_type, payload = encode_error(body, form)
    challenge = _challenge(exc)
    headers = [(name.lower().encode(), value.encode()) for name, value in challenge.items()] if challenge else None
    status = int(body["status"])
    await respond(send, status, content_type.encode(), payload, headers)
    return status


# FastAPI's exception handlers: the same rendering for every route FastAPI serves, in the form of its path


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RnnServeError)
    body = describe(exc, f"{request.method} {request.url.path}")
    return error_response(body, form_of(request.url.path), _challenge(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == HTTPStatus.NOT_FOUND:
        detail = f"no route {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        detail = f"{request.method} is not allowed on {request.url.path}"
        # Starlette's Allow names the methods of the first route that matched the path; a path served by several
        # routes (GET and DELETE /v1/sessions/{id}) allows them all
        headers["Allow"] = ", ".join(sorted(allowed_methods(request.app.router.routes, request.url.path)))
    return error_response(problem(exc.status_code, detail), form_of(request.url.path), headers)


def allowed_methods(routes: Sequence[Any], path: str) -> set[str]:
    """Every method of the HTTP routes whose template matches `path` (through included routers)."""
    found: set[str] = set()
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found |= allowed_methods(included.routes, path)
        elif isinstance(route, Route) and route.methods and route.path_regex.match(path):
            found |= route.methods
    return found


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
    body = problem(HTTPStatus.BAD_REQUEST, "; ".join(parts) or "invalid request")
    return error_response(body, form_of(request.url.path))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(describe(exc, f"{request.method} {request.url.path}"), form_of(request.url.path))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RnnServeError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


# ---- WebSocket streams --------------------------------------------------------------------------------------------

CLOSE_GOING_AWAY = 1001  # the stream was idle for ws_idle_timeout_s
CLOSE_UNSUPPORTED = 1003  # a frame the stream cannot take, or a stream that cannot start as asked
CLOSE_POLICY = 1008  # no (or a wrong) API key
CLOSE_INTERNAL = 1011  # an internal failure
CLOSE_SESSION_GONE = 4404  # the session does not exist or has expired

MessageHandler = Callable[[Message], Awaitable[int | None]]
"""Answers one WebSocket message and returns its status, or None when it closed the stream instead."""


async def send_text(send: Send, body: bytes) -> None:
    await send({"type": "websocket.send", "text": body.decode()})


async def close(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": code, "reason": reason})


def _reason(exc: RnnServeError) -> str:
    return "session not found" if isinstance(exc, SessionNotFound) else exc.detail[:120]


async def ws_accept(receive: Receive, send: Send, head: Head, settings: Settings) -> bool:
    """Take the handshake: True once accepted; False when the client left first or was closed for want of the
    API key (1008)."""
    if (await receive())["type"] != "websocket.connect":
        return False
    try:
        authorize(settings, head.authorization)
    except Unauthorized as exc:
        await close(send, CLOSE_POLICY, exc.detail)
        return False
    await send({"type": "websocket.accept"})
    return True


async def ws_refuse(send: Send, exc: RnnServeError, what: str) -> None:
    """An accepted stream that cannot start: its problem as a text message, then the close code (4404 for a
    missing session, else 1003)."""
    await send_text(send, dumps(describe(exc, what)))
    await close(send, CLOSE_SESSION_GONE if isinstance(exc, SessionNotFound) else CLOSE_UNSUPPORTED, _reason(exc))


def ws_error(exc: Exception, what: str) -> tuple[bytes, int]:
    """A message's error as (problem text reply, status); the stream goes on."""
    body = describe(exc, what)
    return dumps(body), int(body["status"])


async def ws_serve(scope: Scope, receive: Receive, send: Send, handler: MessageHandler, what: str) -> None:
    """Answer messages with `handler` until either side closes, counting each under the route's template. A
    message answered 404 (its session is gone) closes the stream with 4404; a failure of the loop itself, 1011."""
    serving_: Serving = scope["app"].serving
    metrics = serving_.metrics
    route: str = scope["route"].path
    tenant = tag(current_tenant()) if serving_.by_tenant else None  # the stream's, found at the upgrade
    idle = IdleWatch(serving_.settings.ws_idle_timeout_s)
    try:
        while True:
            idle.waiting = True
            message = await receive()
            idle.waiting = False
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            started = time.perf_counter()
            status = await handler(message)
            idle.last = idle.loop.time()
            if status is None:
                return
            metrics.observe(route, "WS", status, time.perf_counter() - started)
            if tenant is not None:
                metrics.tenant_request(tenant, route, "WS", status)
            if status == SessionNotFound.status:
                await close(send, CLOSE_SESSION_GONE, "session not found")
                return
    except asyncio.CancelledError:
        if not idle.fired:
            raise
        idle.uncancel()
        with contextlib.suppress(Exception):
            await close(send, CLOSE_GOING_AWAY, f"idle for {idle.idle_s:g} s")
    except OSError:  # the client went away while a reply was being sent (uvicorn's ClientDisconnected)
        pass
    except Exception:
        log.exception("%s failed", what)
        with contextlib.suppress(Exception):  # the connection is already gone
            await close(send, CLOSE_INTERNAL, "internal error")
    finally:
        idle.stop()


class IdleWatch:
    """Cancels the task that serves a WebSocket once it has waited `idle_s` for a message (`ws_idle_timeout_s`).
    A message costs two attribute writes; one timer per stream re-arms itself for the latest deadline."""

    __slots__ = ("loop", "idle_s", "last", "waiting", "fired", "_task", "_handle")

    def __init__(self, idle_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle_s = idle_s
        self.last = self.loop.time()
        self.waiting = False
        self.fired = False
        self._task = asyncio.current_task()
        self._handle = self.loop.call_later(idle_s, self._check)

    def _check(self) -> None:
        due = self.last + self.idle_s
        now = self.loop.time()
        if self.waiting and now >= due and self._task is not None:
            self.fired = True
            self._task.cancel()
            return
        self._handle = self.loop.call_later(max(due - now, 0.01) if self.waiting else self.idle_s, self._check)

    def uncancel(self) -> None:
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+: the task may await again normally
        if uncancel is not None:
            uncancel()

    def stop(self) -> None:
        self._handle.cancel()


# ---- the hot routes and the app -----------------------------------------------------------------------------------

_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class HotRoute:
    """A route served by a plain ASGI endpoint before FastAPI's routing (see `EdgeApp`).

    `path` is a template whose parameters are whole path segments (`/v1/sessions/{session_id}/step`); each
    matches one non-empty segment, as Starlette's `{name}` does. `method` is "POST" (an HTTP route) or "WS" (a
    WebSocket). The rest describes the route in the OpenAPI schema: `accepts` and `answers` are its request and
    success content types, `errors` its error form."""

    method: Literal["POST", "WS"]
    path: str
    endpoint: Endpoint
    summary: str
    tags: tuple[str, ...]
    errors: Form = PROBLEM
    accepts: tuple[str, ...] = ("application/json",)
    answers: tuple[str, ...] = ("application/json",)


class _Pattern:
    """A compiled `HotRoute.path`: the fixed text before its first parameter's segment and after its last one, and
    each segment between them (a parameter's name, or a literal). A path without parameters is all prefix."""

    __slots__ = ("route", "template", "prefix", "suffix", "start", "stop", "single", "segments")

    def __init__(self, route: HotRoute) -> None:
        path = route.path
        first = path.find("{")
        start = end = len(path)
        if first >= 0:
            start = path.rindex("/", 0, first) + 1
            end = path.find("/", path.rindex("}"))
            end = len(path) if end < 0 else end
        self.route, self.template = route, path
        self.prefix, self.suffix = path[:start], path[end:]
        self.start, self.stop = start, (end - len(path)) or None  # path[start:stop]: what lies between
        segments: list[tuple[str, bool]] = []
        for segment in path[start:end].split("/") if first >= 0 else ():
            param = _PARAM.fullmatch(segment)
            segments.append((param.group(1), True) if param else (segment, False))
        self.segments = tuple(segments)
        self.single = segments[0][0] if len(segments) == 1 and segments[0][1] else None

    def key(self) -> tuple[str, str, int, int | None, str | None, _Pattern]:
        """What `HotRoutes.match` reads, as one tuple (unpacked at once in its loop)."""
        return self.prefix, self.suffix, self.start, self.stop, self.single, self

    def params(self, middle: str) -> dict[str, str] | None:
        """The parameters in the part of a path between the prefix and the suffix, or None when it does not fit
        (`HotRoutes.match` reads a single parameter itself)."""
        if not self.segments:
            return None if middle else {}
        parts = middle.split("/")
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for part, (name, is_param) in zip(parts, self.segments, strict=True):
            if is_param:
                if not part:
                    return None
                params[name] = part
            elif part != name:
                return None
        return params


_Keys = tuple[tuple[str, str, int, int | None, str | None, _Pattern], ...]


class HotRoutes:
    """The table of hot routes, compiled for `match`: routes are tried in the table's order."""

    def __init__(self, routes: Sequence[HotRoute]) -> None:
        self.routes = tuple(routes)
        self._http = tuple(_Pattern(r).key() for r in self.routes if r.method == "POST")
        self._websocket = tuple(_Pattern(r).key() for r in self.routes if r.method == "WS")

    def match(self, scope: Scope) -> tuple[HotRoute, str, dict[str, str]] | None:
        """(route, its template, path parameters) of a hot request, else None."""
        kind = scope["type"]
        if kind == "http":
            if scope["method"] != "POST":
                return None
            patterns = self._http
        elif kind == "websocket":
            patterns = self._websocket
        else:
            return None
        return self._find(patterns, scope["path"])

    def match_post(self, path: str) -> tuple[HotRoute, str, dict[str, str]] | None:
        """`match` for a POST request to `path` (the protocol's fast path, before any scope exists)."""
        return self._find(self._http, path)

    @staticmethod
    def _find(patterns: _Keys, path: str) -> tuple[HotRoute, str, dict[str, str]] | None:
        for prefix, suffix, start, stop, single, pattern in patterns:
            if path.startswith(prefix) and path.endswith(suffix):
                middle = path[start:stop]
                if single is not None:
                    if middle and "/" not in middle:
                        return pattern.route, pattern.template, {single: middle}
                else:
                    params = pattern.params(middle)
                    if params is not None:
                        return pattern.route, pattern.template, params
        return None


class _StatusWatch:
    """`send` for a request FastAPI serves, noting the status it answers (500 until a response starts)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


class _Routed:
    """A hot route's endpoint as FastAPI's routing calls it (under a root path, or with the dispatcher skipped).
    It names its route in the scope as the dispatcher does (FastAPI's router names only its own routes there),
    so that the request, or each message of a stream, is counted under the route's template."""

    __slots__ = ("route",)

    def __init__(self, route: HotRoute) -> None:
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        await self.route.endpoint(scope, receive, send)


class EdgeApp(FastAPI):
    """The application behind the edge: hot routes (one table, `HotRoutes`) go straight to their plain ASGI
    endpoints, everything else through FastAPI, and every HTTP request is counted by route template."""

    serving: Serving  # set by `create_app`

    def __init__(self, hot: Sequence[HotRoute], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = HotRoutes(hot)
        self._match = self.hot.match
        install_error_handlers(self)
        # FastAPI types these as request handlers; Starlette (which does the routing) also takes plain ASGI apps
        for route in self.hot.routes:
            if route.method == "WS":
                self.router.add_websocket_route(route.path, cast(Any, _Routed(route)))
            else:
                self.router.add_route(route.path, cast(Any, _Routed(route)), [route.method], include_in_schema=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._connection(scope, receive, send)
            return
        serving = self.serving
        started = time.perf_counter()
        if serving.cors is not None:  # off by default: then this test is all CORS costs a request
            cors = await _cors(serving.cors, scope, send)
            if isinstance(cors, int):  # a preflight, answered
                serving.metrics.observe(PREFLIGHT, "OPTIONS", cors, time.perf_counter() - started)
                return
            send = cors
        hot = None if self.root_path else self._match(scope)
        if hot is not None:
            route, template, scope["path_params"] = hot
            await self.serve_hot(scope, receive, send, route, template, started)
            return
        watch = _StatusWatch(send)
        try:
            await super().__call__(scope, receive, watch)
        finally:
            self._count(scope, getattr(scope.get("route"), "path", None) or "<unmatched>", watch.status, started)

    def hot_posts(self) -> Callable[[str], tuple[HotRoute, str, dict[str, str]] | None] | None:
        """What the HTTP protocol's fast path matches a POST request's path with (`HotRoutes.match_post`), or None
        when every request must come through `__call__`: under a root path, or with CORS on (its headers are added
        there)."""
        if self.root_path or self.serving.cors is not None:
            return None
        return self.hot.match_post

    async def serve_hot(
        self, scope: Scope, receive: Receive, send: Send, route: HotRoute, template: str, started: float
    ) -> None:
        """A hot HTTP request (its `path_params` in the scope), answered by its endpoint and counted; from
        `__call__`, or from the protocol's fast path (`rnnserve.api.protocol.HotCycle`). `started`: when it began
        (`time.perf_counter()`)."""
        scope["app"] = self
        status = 500  # if the endpoint fails before it starts a response
        try:
            status = await route.endpoint(scope, receive, send)
        finally:
            self._count(scope, template, status, started)

    def _count(self, scope: Scope, template: str, status: int, started: float) -> None:
        serving = self.serving
        metrics = serving.metrics
        metrics.observe(template, scope["method"], status, time.perf_counter() - started)
        if serving.by_tenant:  # a server with keys: the tenant the edge found for the request ('-': none)
            metrics.tenant_request(tag(current_tenant()), template, scope["method"], status)

    async def _connection(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket (hot: `ws_serve` counts its messages) or the lifespan."""
        if scope["type"] == "websocket" and self.serving.cors is not None:
            origin = Cors.read(scope)[0]
            if origin is not None and not self.serving.cors.allows(origin):
                # a page of an origin CORS does not list: browsers let any page open a WebSocket, so it is refused
                # here, before the handshake completes (uvicorn answers 403)
                await close(send, CLOSE_POLICY, "origin not allowed")
                return
        hot = self._match(scope) if scope["type"] == "websocket" and not self.root_path else None
        if hot is None:
            await super().__call__(scope, receive, send)
            return
        route, _, scope["path_params"] = hot
        scope["app"] = self
        scope["route"] = route
        await route.endpoint(scope, receive, send)


PREFLIGHT = "<cors-preflight>"
"""The route template under which CORS preflights, answered before routing, are counted."""


async def _cors(cors: Cors, scope: Scope, send: Send) -> Send | int:
    """A request on a server with CORS: a preflight answered (its status), else the `send` that adds the CORS
    headers to the request's response (`rnnserve.api.cors`)."""
    origin, method, asked = cors.read(scope)
    if origin is None or method is None or scope["method"] != "OPTIONS":
        return cors.sender(send, origin)
    try:
        headers = cors.preflight(origin, method, asked)
    except CorsRefused as exc:
        return await respond_error(cors.sender(send, None), exc, form_of(scope["path"]), scope)
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
    return 204
