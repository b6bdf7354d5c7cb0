"""Errors rendered once, at the edge: problem+json (RFC 9457) on /v1 and elsewhere, `{"error": ...}` on /v2.

Domain errors (`service.errors`) carry their status, problem type and title; framework errors (unknown route,
wrong method, request validation) and unexpected failures are mapped here. Handlers choose the form by path.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.errors import RnnServeError, Unauthorized

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
V2_PREFIX = "/v2"

Problem = dict[str, Any]


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


def problem_response(body: Problem, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def v2_error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The Open Inference Protocol's error form."""
    body = orjson.dumps({"error": message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def render(request: Request, body: Problem, headers: dict[str, str] | None = None) -> Response:
    if request.url.path.startswith(V2_PREFIX):
        return v2_error_response(body["status"], body["detail"], headers)
    return problem_response(body, headers)


# ---- handlers -----------------------------------------------------------------------------------------------------


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RnnServeError)
    if exc.status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.detail)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return render(request, error_problem(exc), headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == HTTPStatus.NOT_FOUND:
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return render(request, problem(exc.status_code, detail), dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
    return render(request, problem(HTTPStatus.BAD_REQUEST, "; ".join(parts) or "invalid request"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    body = problem(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__}); see the server log")
    return render(request, body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RnnServeError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
