"""CORS (the Fetch standard's cross-origin requests), for browsers that call the API from pages of other origins.

Off unless `cors_allow_origins` lists origins: then `Cors.of(settings)` is None and the edge (`EdgeApp`) adds
nothing to a request but one test of that None. On, the edge applies it to every HTTP route in one place, the hot
routes included (they are served before FastAPI's middleware, so Starlette's `CORSMiddleware` would have to wrap
the whole app; this is the same behaviour without its per-request `Headers` objects):

* a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here, before routing and
  the API key (a browser sends no key on a preflight): 204 with the Access-Control-Allow-* headers when the origin,
  the method and the headers it asks for are allowed, else 400 `cors-refused` without them;
* any other request with an allowed `Origin` gets `Access-Control-Allow-Origin` (and Expose-Headers, and
  Allow-Credentials when set) on its response, whatever it is: a success, a problem+json error, a 401, a 404;
* a listed origin is mirrored back (`*` only when any origin is allowed, without credentials), so every response
  of a server that lists origins says `Vary: Origin`, for caches.

WebSockets are not subject to CORS in browsers (a page of any origin may open one, and cannot send the API key on
it): on a server that lists origins, the edge refuses a WebSocket handshake whose `Origin` is not allowed (403,
before the handshake completes); one without `Origin` (not from a browser) is served as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import Message, Scope, Send

from rnnserve.errors import CorsRefused
from rnnserve.settings import Settings

Headers = list[tuple[bytes, bytes]]

SAFELISTED_HEADERS = frozenset({b"accept", b"accept-language", b"content-language", b"content-type"})
"""Request headers a page may always send (CORS-safelisted), whatever `cors_allow_headers` says."""

_ORIGIN = b"origin"
_REQUEST_METHOD = b"access-control-request-method"
_REQUEST_HEADERS = b"access-control-request-headers"
_ALLOW_ORIGIN = b"access-control-allow-origin"
_VARY = b"vary"


class Cors:
    """What the settings allow, with the header values made once."""

    __slots__ = (
        "any_origin",
        "origins",
        "subdomains",
        "methods",
        "any_method",
        "headers",
        "any_header",
        "vary",
        "_actual",
        "_preflight",
        "_allow_methods",
        "_allow_headers",
    )

    def __init__(self, settings: Settings) -> None:
        origins = settings.cors_allow_origins
        credentials = settings.cors_allow_credentials
        self.any_origin = origins == ("*",)
        self.origins = frozenset(o.encode() for o in origins if "*" not in o)
        # `scheme://*.domain[:port]`: an origin of that scheme (and port) whose host is a subdomain of domain
        self.subdomains = _subdomains([o for o in origins if "://*." in o])
        self.any_method = settings.cors_allow_methods == ("*",)
        self.methods = frozenset(m.encode() for m in settings.cors_allow_methods)
        self.any_header = settings.cors_allow_headers == ("*",)
        self.headers = SAFELISTED_HEADERS | {h.lower().encode() for h in settings.cors_allow_headers}
        # A server that mirrors an origin answers by origin: every response says so, allowed origin or not, so that a
        # cache never hands one origin's answer to another. Any origin (never with credentials) is answered with `*`.
        self.vary = not self.any_origin
        actual: Headers = []
        if settings.cors_expose_headers:
            actual.append((b"access-control-expose-headers", ", ".join(settings.cors_expose_headers).encode()))
        preflight: Headers = [(b"access-control-max-age", b"%d" % settings.cors_max_age_s)]
        if credentials:
            actual.append((b"access-control-allow-credentials", b"true"))
            preflight.append((b"access-control-allow-credentials", b"true"))
        self._actual = actual
        self._preflight = preflight
        self._allow_methods = ", ".join(settings.cors_allow_methods).encode()
        self._allow_headers = ", ".join(settings.cors_allow_headers).encode()

    @classmethod
    def of(cls, settings: Settings) -> Cors | None:
        """The server's CORS, or None when it is off (no `cors_allow_origins`)."""
        return cls(settings) if settings.cors_allow_origins else None

    def allows(self, origin: bytes) -> bool:
        if self.any_origin:
            return True
        origin = origin.lower()
        return origin in self.origins or (self.subdomains is not None and self.subdomains.fullmatch(origin) is not None)

    def _allow_origin(self, origin: bytes) -> tuple[bytes, bytes]:
        return _ALLOW_ORIGIN, origin if self.vary else b"*"

    # ---- a request ---------------------------------------------------------------------------------------------------

    @staticmethod
    def read(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(Origin, Access-Control-Request-Method, Access-Control-Request-Headers) of a request, each None if absent."""
        origin = method = asked = None
        for name, value in scope["headers"]:
            if name == _ORIGIN:
                origin = value
            elif name == _REQUEST_METHOD:
                method = value
            elif name == _REQUEST_HEADERS:
                asked = value
        return origin, method, asked

    def preflight(self, origin: bytes, method: bytes, asked: bytes | None) -> Headers:
        """The headers of a 204 that allows a preflight; `CorsRefused` (400) for an origin, a method or a header
        that is not allowed."""
        if not self.allows(origin):
            raise CorsRefused(f"origin {_text(origin)!r} is not allowed (cors_allow_origins)")
        if not self.any_method and method not in self.methods:
            raise CorsRefused(f"method {_text(method)!r} is not allowed (cors_allow_methods)")
        names = [n.strip() for n in (asked or b"").lower().split(b",") if n.strip()]
        refused = [n for n in names if n not in self.headers]
        if refused and not self.any_header:
            listed = ", ".join(_text(n) for n in refused)
            raise CorsRefused(f"request headers {listed} are not allowed (cors_allow_headers)")
        headers = [self._allow_origin(origin), *self._preflight]
        headers.append((b"access-control-allow-methods", method if self.any_method else self._allow_methods))
        if names:
            allowed = b", ".join(names) if self.any_header else self._allow_headers
            headers.append((b"access-control-allow-headers", allowed))
        vary = [b"Origin"] if self.vary else []
        if self.any_header and names:
            vary.append(b"Access-Control-Request-Headers")  # the answer mirrors them
        if vary:
            headers.append((_VARY, b", ".join(vary)))
        return headers

    def sender(self, send: Send, origin: bytes | None) -> Send:
        """`send` for the response to an actual request from `origin` (None: no Origin header): with the
        Access-Control-* headers when the origin is allowed, and `Vary: Origin` on a server that mirrors origins."""
        if origin is not None and self.allows(origin):
            return _Adding(send, [self._allow_origin(origin), *self._actual], self.vary)
        return _Adding(send, [], True) if self.vary else send


class _Adding:
    """`send` that adds headers (and `Origin` to `Vary`) to the start of a response."""

    __slots__ = ("send", "headers", "vary")

    def __init__(self, send: Send, headers: Headers, vary: bool) -> None:
        self.send, self.headers, self.vary = send, headers, vary

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = with_headers(message.get("headers", ()), self.headers, self.vary)
        await self.send(message)


def with_headers(given: Sequence[tuple[bytes, bytes]], added: Headers, vary_origin: bool) -> Headers:
    """A response's headers with `added`, and with `Origin` in its `Vary` (one header, merged with a Vary it has)."""
    headers = list(given)
    if vary_origin:
        for i, (name, value) in enumerate(headers):
            if name.lower() == _VARY:
                if b"origin" not in value.lower() and value.strip() != b"*":
                    headers[i] = (name, value + b", Origin")
                break
        else:
            headers.append((_VARY, b"Origin"))
    headers.extend(added)
    return headers


def _subdomains(patterns: Sequence[str]) -> re.Pattern[bytes] | None:
    """One expression that matches the origins of `scheme://*.domain[:port]` patterns (lower-case), or None."""
    if not patterns:
        return None
    alternatives = []
    for pattern in patterns:
        scheme, _, rest = pattern.partition("://*.")
        alternatives.append(re.escape(scheme + "://") + r"[a-z0-9_~-]+(\.[a-z0-9_~-]+)*\." + re.escape(rest))
    return re.compile("|".join(f"(?:{a})" for a in alternatives).encode())


def _text(value: bytes) -> str:
    return value.decode("latin-1")[:100]
