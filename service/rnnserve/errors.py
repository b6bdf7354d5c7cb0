"""Domain errors. Each carries its HTTP status and problem type; the API renders them once at the edge
(`rnnserve.api.problems`), as problem+json on /v1 and as `{"error": ...}` on /v2. No web framework here."""

from __future__ import annotations

from http import HTTPStatus


class RnnServeError(Exception):
    """Base of every error rnnserve raises on purpose."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    type: str = "about:blank"
    title: str = "Internal error"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r})"


def problem_type(slug: str) -> str:
    """The `type` URI of a problem."""
    return f"https://rnnserve.dev/problems/{slug}"


_problem = problem_type


# ---- model files and conversion -------------------------------------------------------------------------------


class ModelFileError(RnnServeError):
    """A model file is unreadable, truncated, inconsistent or unsafe."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    type = _problem("bad-model-file")
    title = "Bad model file"


class UnsupportedLayer(ModelFileError):
    """A layer class or layer argument that rnnserve cannot compute exactly."""

    type = _problem("unsupported-layer")
    title = "Unsupported layer"


class InvalidArgument(RnnServeError, ValueError):
    """A wrong argument to the layer API (units <= 0, unknown activation, ...). The message names it."""

    status = HTTPStatus.BAD_REQUEST
    type = _problem("invalid-argument")
    title = "Invalid argument"


# ---- serving ----------------------------------------------------------------------------------------------------


class InvalidInput(RnnServeError):
    status = HTTPStatus.BAD_REQUEST
    type = _problem("invalid-input")
    title = "Invalid input"


class PayloadTooLarge(RnnServeError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    type = _problem("payload-too-large")
    title = "Payload too large"


class UnsupportedMediaType(RnnServeError):
    """A request body whose Content-Type is neither JSON nor raw tensor bytes."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    type = _problem("unsupported-media-type")
    title = "Unsupported media type"


class ModelNotFound(RnnServeError):
    status = HTTPStatus.NOT_FOUND
    type = _problem("model-not-found")
    title = "Model not found"


class ModelNotReady(RnnServeError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    type = _problem("model-not-ready")
    title = "Model not ready"


class SessionNotFound(RnnServeError):
    status = HTTPStatus.NOT_FOUND
    type = _problem("session-not-found")
    title = "Session not found"


class SessionsNotSupported(RnnServeError):
    """The model cannot be streamed (no recurrent state, or Bidirectional: it needs the future)."""

    status = HTTPStatus.CONFLICT
    type = _problem("sessions-not-supported")
    title = "Model cannot serve sessions"


class SeqConflict(RnnServeError):
    """A step's `seq` does not match the session's step (and is not an exact retry)."""

    status = HTTPStatus.CONFLICT
    type = _problem("seq-conflict")
    title = "Step sequence conflict"


class ReplyNotKept(SeqConflict):
    """An exact retry of a session's last step whose reply was too large to keep (`max_retry_reply_bytes`): the step
    was applied, its reply cannot be sent again."""

    type = _problem("reply-not-kept")
    title = "Reply too large to keep"


class TooManySessions(RnnServeError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    type = _problem("too-many-sessions")
    title = "Too many sessions"


class StoreUnavailable(RnnServeError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    type = _problem("store-unavailable")
    title = "Session store unavailable"


class Unauthorized(RnnServeError):
    status = HTTPStatus.UNAUTHORIZED
    type = _problem("unauthorized")
    title = "Unauthorized"


class CorsRefused(RnnServeError):
    """A CORS preflight from an origin, or asking for a method or headers, that the CORS settings do not allow."""

    status = HTTPStatus.BAD_REQUEST
    type = _problem("cors-refused")
    title = "Cross-origin request refused"
