"""POST /v2/models/{model}/infer (and .../versions/{version}/infer) as a plain ASGI endpoint.

Served before FastAPI's routing by `service.api.v1.hotpath.HotPathApp` and also registered as an ordinary route
(`routes.py`), so it behaves the same either way: the API key, the body limit, Content-Encoding, the
Inference-Header-Content-Length header in and out, the version check, and errors in the Open Inference Protocol's
form (`{"error": ...}`, as `service.api.problems` renders every path under /v2). Each call returns the HTTP status
it answered (for the caller's metrics).
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import Receive, Scope, Send

from service.api.deps import Serving
from service.api.v1.asgi import JSON, OCTET_STREAM, ClientGone, Head, authorize, read_body, respond
from service.api.v2.binding import ready_model
from service.api.v2.infer import infer
from service.api.v2.tensors import HEADER_LENGTH, decode_content, decode_request
from service.errors import RnnServeError, Unauthorized

log = logging.getLogger(__name__)

CLIENT_GONE = 499  # nginx's "client closed request": counted, never sent
_CONTENT_ENCODING = b"content-encoding"
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()


def _v2_headers(scope: Scope) -> tuple[str | None, str | None]:
    """Content-Encoding and Inference-Header-Content-Length, the first of each (as Starlette's `headers.get`)."""
    encoding: str | None = None
    header_length: str | None = None
    for name, value in scope["headers"]:
        if name == _CONTENT_ENCODING:
            if encoding is None:
                encoding = value.decode("latin-1")
        elif name == _HEADER_LENGTH and header_length is None:
            header_length = value.decode("latin-1")
    return encoding, header_length


async def respond_v2_error(send: Send, exc: Exception, what: str) -> int:
    """Render an exception as `{"error": ...}` exactly as `service.api.problems` does under /v2."""
    if isinstance(exc, RnnServeError):
        status = int(exc.status)
        message = exc.detail
        if status >= 500:
            log.warning("%s -> %d: %s", what, status, message)
    else:
        log.error("%s failed", what, exc_info=exc)
        status = 500
        message = f"internal error ({type(exc).__name__}); see the server log"
    headers = [(b"www-authenticate", b"Bearer")] if isinstance(exc, Unauthorized) else None
    await respond(send, status, JSON, orjson.dumps({"error": message}), headers)
    return status


class InferEndpoint:
    """An Open Inference Protocol infer request (JSON, or JSON + binary tensor data) -> its response."""

    route = "/v2/models/{model}/infer"
    version_route = "/v2/models/{model}/versions/{version}/infer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        serving: Serving = scope["app"].serving
        service, settings = serving.service, serving.settings
        params: dict[str, str] = scope["path_params"]
        head = Head(scope)
        try:
            # the order of the FastAPI route: the key (router dependency), the body, then the model and version
            if settings.api_key is not None:
                authorize(settings, head.authorization)
            limit = settings.max_body_bytes
            body = await read_body(receive, head, limit)
            loaded = ready_model(service, params["model"], params.get("version"))
            assert loaded.signature is not None
            encoding, header_length_in = _v2_headers(scope)
            raw = decode_content(body, encoding, limit)
            payload, header_length = await infer(service, loaded.signature, decode_request(raw, header_length_in))
            if header_length is None:
                await respond(send, 200, JSON, payload)
            else:
                await respond(send, 200, OCTET_STREAM, payload, [(_HEADER_LENGTH, str(header_length).encode())])
            return 200
        except ClientGone:
            return CLIENT_GONE
        except Exception as exc:
            return await respond_v2_error(send, exc, f"POST {scope['path']}")


infer_endpoint = InferEndpoint()
