"""POST /v1/sessions/{session_id}/step and POST /v1/models/{model}/predict as plain ASGI endpoints.

Each takes a JSON body or a binary one (`rnnserve.api.v1.binary`), answers JSON or raw bytes as the request
negotiates, and leaves the API key, the body limit and errors (problem+json) to the edge (`rnnserve.api.edge`).
They are hot routes (`rnnserve.api.routes`): served before FastAPI's routing and registered with it too, so they
behave the same either way; each call returns the HTTP status it answered (for the edge's metrics).
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from rnnserve.api import edge
from rnnserve.api.edge import JSON, OCTET_STREAM, PROBLEM, Head, Serving, read_body, respond
from rnnserve.api.v1 import binary, codec


class StepEndpoint:
    """`{"inputs": [B][T][D], "mask"?, "seq"?: N, "return_state"?}` (or raw bytes) ->
    `{"outputs", "step": N+T, "states"?}`"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        serving: Serving = scope["app"].serving
        service = serving.service
        session_id: str = scope["path_params"]["session_id"]
        head = Head(scope, binary.HEADERS)
        try:
            codec.v1_session_id(session_id)
            body = await read_body(receive, head, serving.settings)
            reply_binary = head.binary_reply
            if head.binary_body:
                request = binary.step_request(body, binary.options(scope, head), reply_binary)
            else:
                request = codec.parse_step(codec.parse_object(body), body, variant=b"bin" if reply_binary else b"")
            if reply_binary:
                request = request._replace(binary_reply=True)
            if not reply_binary:
                await respond(send, 200, JSON, await service.step(session_id, request, codec.encode_step))
                return 200
            step, tensors, payload = binary.split_step(await service.step(session_id, request, binary.encode_step))
            await respond(send, 200, OCTET_STREAM, payload, [(b"x-step", b"%d" % step), (b"x-tensors", tensors)])
            return 200
        except ClientDisconnect:
            return edge.CLIENT_GONE
        except Exception as exc:
            return await edge.respond_error(send, exc, PROBLEM, scope)


class PredictEndpoint:
    """`{"inputs", "mask"?, "initial_state"?, "time_major"?, "return_state"?}` (or raw bytes) ->
    `{"outputs": ..., "states"?: [...]}`"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        serving: Serving = scope["app"].serving
        model: str = scope["path_params"]["model"]
        head = Head(scope, binary.HEADERS)
        try:
            body = await read_body(receive, head, serving.settings)
            if head.binary_body:
                request = binary.predict_request(body, binary.options(scope, head))
            else:
                request = codec.parse_predict(codec.parse_object(body))
            if head.binary_reply:
                request = request._replace(binary_reply=True)
            result = await serving.service.predict(model, request)
            if not head.binary_reply:
                await respond(send, 200, JSON, codec.encode_result(result))
                return 200
            payload, tensors = binary.encode_result(result)
            await respond(send, 200, OCTET_STREAM, payload, [(b"x-tensors", tensors.encode())])
            return 200
        except ClientDisconnect:
            return edge.CLIENT_GONE
        except Exception as exc:
            return await edge.respond_error(send, exc, PROBLEM, scope)


step_endpoint = StepEndpoint()
predict_endpoint = PredictEndpoint()
