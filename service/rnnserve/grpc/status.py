"""Errors as gRPC statuses: every domain error (`rnnserve.errors`) maps to a status code, from its HTTP status,
with the one HTTP status that means two things split by the error's type; the details are the error's own detail.

| problem (HTTP)                                      | gRPC                 |
|-----------------------------------------------------|----------------------|
| InvalidInput, SequenceNotStarted, ... (400, 422)    | INVALID_ARGUMENT     |
| Unauthorized (401)                                  | UNAUTHENTICATED      |
| ModelNotFound, SessionNotFound (404)                | NOT_FOUND            |
| SeqConflict (409)                                   | ABORTED (retry)      |
| SessionsNotSupported (409)                          | FAILED_PRECONDITION  |
| PayloadTooLarge (413), TooManySessions (429)        | RESOURCE_EXHAUSTED   |
| ModelNotReady, StoreUnavailable (503)               | UNAVAILABLE          |
| anything else (500; logged with its traceback)      | INTERNAL             |
"""

from __future__ import annotations

from http import HTTPStatus
from typing import NoReturn

import grpc

from rnnserve.api.edge import describe
from rnnserve.errors import RnnServeError, SeqConflict, SessionsNotSupported

BY_HTTP_STATUS: dict[int, grpc.StatusCode] = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.CONFLICT: grpc.StatusCode.ABORTED,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,  # HTTP only: gRPC bodies are typed
    HTTPStatus.UNPROCESSABLE_ENTITY: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.NOT_IMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""A problem's HTTP status -> its gRPC code; a status not listed is INTERNAL."""

BY_TYPE: dict[type[RnnServeError], grpc.StatusCode] = {
    SeqConflict: grpc.StatusCode.ABORTED,  # a concurrent request moved the sequence: retrying may succeed
    SessionsNotSupported: grpc.StatusCode.FAILED_PRECONDITION,  # the model cannot run sequences: never succeeds
}
"""Errors whose HTTP status (409 for both) does not say enough."""


def status_of(exc: BaseException, what: str) -> tuple[grpc.StatusCode, str]:
    """The status code and details that answer `exc` (an unexpected exception is logged, as the HTTP edge logs it,
    and answered INTERNAL without its message). `what` names the call in the log."""
    problem = describe(exc, what)
    details = str(problem["detail"])
    for kind, code in BY_TYPE.items():
        if isinstance(exc, kind):
            return code, details
    return BY_HTTP_STATUS.get(int(problem["status"]), grpc.StatusCode.INTERNAL), details


async def abort(context: grpc.aio.ServicerContext[object, object], exc: BaseException, what: str) -> NoReturn:
    """End the call with the status of `exc`."""
    code, details = status_of(exc, what)
    await context.abort(code, details)
    raise AssertionError("context.abort returns only by raising")  # pragma: no cover
