"""POST /v2/models/{model}/infer (and .../versions/{version}/infer) as a plain ASGI endpoint.

A hot route (`rnnserve.api.routes`): served before FastAPI's routing and registered with it too, so it behaves
the same either way. The edge (`rnnserve.api.edge`) does the API key, the body limit, Content-Encoding and errors
in the Open Inference Protocol's form (`{"error": ...}`, as it renders every path under /v2); here: the
Inference-Header-Content-Length header in and out, and the version check. Each call returns the HTTP status it
answered (for the edge's metrics).
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from rnnserve.api import edge
from rnnserve.api.edge import JSON, OCTET_STREAM, V2, Head, Serving, decode_content, read_body, respond
from rnnserve.api.v2.binding import ready_model
from rnnserve.api.v2.infer import infer
from rnnserve.api.v2.tensors import HEADER_LENGTH, decode_request

_CONTENT_ENCODING = b"content-encoding"
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()
_HEADERS = edge.wanted_headers(_CONTENT_ENCODING, _HEADER_LENGTH)


class InferEndpoint:
    """An Open Inference Protocol infer request (JSON, or JSON + binary tensor data) -> its response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        serving: Serving = scope["app"].serving
        params: dict[str, str] = scope["path_params"]
        head = Head(scope, _HEADERS)
        try:
            # the order of FastAPI's routes: the key, the body, then the model and version
            body = await read_body(receive, head, serving.settings)
            loaded = ready_model(serving.service, params["model"], params.get("version"))
            assert loaded.signature is not None
            raw = decode_content(body, head.get(_CONTENT_ENCODING), serving.settings.max_body_bytes)
            request = decode_request(raw, head.get(_HEADER_LENGTH))
            payload, header_length = await infer(serving.service, loaded.signature, request)
            if header_length is None:
                await respond(send, 200, JSON, payload)
            else:
                await respond(send, 200, OCTET_STREAM, payload, [(_HEADER_LENGTH, str(header_length).encode())])
            return 200
        except ClientDisconnect:
            return edge.CLIENT_GONE
        except Exception as exc:
            return await edge.respond_error(send, exc, V2, scope)


infer_endpoint = InferEndpoint()
