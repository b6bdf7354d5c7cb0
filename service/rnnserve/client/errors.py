"""The client's exceptions: one class per problem `type` the server answers (docs/API.md, "Errors"), so that a
caller catches `SeqConflict` or `SessionNotFound` rather than reading status codes.

Every error the server answered is an `ApiError` carrying the problem object (`status`, `type`, `title`,
`detail` and any extra member, e.g. `step` on a seq conflict). Problems without a type of their own
(`about:blank`: an unknown route, a wrong method) map by status. A request that never got an answer, after the
retries, is `ConnectionFailed`; a WebSocket stream that closed under its caller is `StreamClosed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from rnnserve import errors as server


class ClientError(Exception):
    """Base of every error `rnnserve.client` raises."""


class ConnectionFailed(ClientError):
    """No answer: the connection failed (or timed out) on every try. The exception it wraps is `__cause__`."""


class StreamClosed(ClientError):
    """The WebSocket stream closed while replies were still expected. `code` and `reason` are the close frame's."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ApiError(ClientError):
    """An error answer: `status`, `type`, `title`, `detail` and the whole `problem` object (RFC 9457)."""

    def __init__(self, problem: Mapping[str, Any]) -> None:
        self.problem: dict[str, Any] = dict(problem)
        self.status = int(self.problem.get("status") or 0)
        self.type = str(self.problem.get("type") or "about:blank")
        self.title = str(self.problem.get("title") or "")
        self.detail = str(self.problem.get("detail") or "")
        super().__init__(f"{self.status} {self.title}: {self.detail}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.detail!r})"


class InvalidInput(ApiError):
    """400: the request's tensors, fields or options are wrong (the detail names which). Nothing changed."""


class Unauthorized(ApiError):
    """401: the server needs an API key (`api_key=`), or the key is wrong."""


class NotFound(ApiError):
    """404: no such route, model or session."""


class ModelNotFound(NotFound):
    """404: the server serves no model of that name."""


class SessionNotFound(NotFound):
    """404: the session was never created, was deleted, or expired after its TTL."""


class MethodNotAllowed(ApiError):
    """405: the route exists but not with that method."""


class Conflict(ApiError):
    """409."""


class SeqConflict(Conflict):
    """409: the step's `seq` does not match the session, which is at `step` (another client stepped it, or this
    one lost track). `Session.refresh()` takes the server's step."""

    @property
    def step(self) -> int | None:
        value = self.problem.get("step")
        return value if isinstance(value, int) else None


class ReplyNotKept(SeqConflict):
    """409: a retry of the session's last step, which was applied, but whose reply was too large for the server to
    keep (`max_retry_reply_bytes`): read the session (`Session.refresh()`) instead of retrying."""


class SessionsNotSupported(Conflict):
    """409: the model cannot serve sessions (no recurrent state, or a Bidirectional layer)."""


class CorsRefused(InvalidInput):
    """400: a CORS preflight the server's CORS settings do not allow (what a browser sends, never this client)."""


class BadModelFile(ApiError):
    """422: a model file is unreadable, truncated, inconsistent or unsafe."""


class UnsupportedLayer(BadModelFile):
    """422: a layer class or argument rnnserve cannot compute exactly."""


class PayloadTooLarge(ApiError):
    """413: the body, the batch or the timesteps exceed a server limit (the detail names it)."""


class UnsupportedMediaType(ApiError):
    """415: the body's Content-Type is neither application/json nor application/octet-stream."""


class TooManySessions(ApiError):
    """429: the server holds its maximum of live sessions."""


class ServerError(ApiError):
    """500: an internal failure (the server logged it)."""


class ServiceUnavailable(ApiError):
    """503: not able to answer now; the client retries these before raising."""


class ModelNotReady(ServiceUnavailable):
    """503: the model is still loading, or failed to load."""


class StoreUnavailable(ServiceUnavailable):
    """503: the session store does not answer."""


BY_TYPE: dict[str, type[ApiError]] = {
    server.InvalidInput.type: InvalidInput,
    server.InvalidArgument.type: InvalidInput,
    server.Unauthorized.type: Unauthorized,
    server.ModelNotFound.type: ModelNotFound,
    server.SessionNotFound.type: SessionNotFound,
    server.SeqConflict.type: SeqConflict,
    server.ReplyNotKept.type: ReplyNotKept,
    server.SessionsNotSupported.type: SessionsNotSupported,
    server.ModelFileError.type: BadModelFile,
    server.UnsupportedLayer.type: UnsupportedLayer,
    server.PayloadTooLarge.type: PayloadTooLarge,
    server.TooManySessions.type: TooManySessions,
    server.UnsupportedMediaType.type: UnsupportedMediaType,
    server.CorsRefused.type: CorsRefused,
    server.problem_type("quota-exceeded"): TooManySessions,  # rnnserve.tenants.QuotaExceeded
    server.problem_type("work-too-large"): PayloadTooLarge,  # rnnserve.limits.WorkTooLarge
    server.problem_type("reply-too-large"): PayloadTooLarge,  # rnnserve.limits.ReplyTooLarge
    server.ModelNotReady.type: ModelNotReady,
    server.StoreUnavailable.type: StoreUnavailable,
}
"""Problem `type` URI -> exception class."""

BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidInput,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: BadModelFile,
    429: TooManySessions,
    500: ServerError,
    503: ServiceUnavailable,
}
"""Status -> exception class, for problems whose type is `about:blank` or unknown to this client."""


def from_problem(problem: Mapping[str, Any]) -> ApiError:
    """The exception for a problem object."""
    cls = BY_TYPE.get(str(problem.get("type")))
    if cls is None:
        status = problem.get("status")
        cls = BY_STATUS.get(status if isinstance(status, int) else 0, ApiError)
    return cls(problem)


def from_response(status: int, content_type: str, body: bytes) -> ApiError:
    """The exception for an error response: its problem+json body, or a problem made from a body of another kind
    (a proxy's HTML page, /v2's `{"error": ...}`)."""
    problem: Any = None
    if "json" in content_type:
        try:
            problem = orjson.loads(body)
        except orjson.JSONDecodeError:
            problem = None
    if not isinstance(problem, dict) or "status" not in problem:
        message = problem.get("error") if isinstance(problem, dict) else None
        text = message if isinstance(message, str) else body.decode("utf-8", "replace")[:500]
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = ""
        problem = {"type": "about:blank", "title": title, "status": status, "detail": text}
    return from_problem(problem)
