"""POST /v1/sessions/{session_id}/step and POST /v1/models/{model}/predict as plain ASGI endpoints.

Each takes a JSON body or a binary one (`service.api.v1.binary`), answers JSON or raw bytes as the request
negotiates, and renders errors as problem+json. They are served before FastAPI's routing by
`service.api.v1.hotpath.HotPathApp` and are also registered as ordinary routes, so they behave the same either way;
each call returns the HTTP status it answered (for the caller's metrics).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from service.api.deps import Serving
from service.api.v1 import binary, codec
from service.api.v1.asgi import JSON, OCTET_STREAM, ClientGone, Head, authorize, read_body, respond, respond_error

CLIENT_GONE = 499  # nginx's "client closed request": counted, never sent


class StepEndpoint:
    """`{"inputs": [B][T][D], "mask"?, "seq"?: N, "return_state"?}` (or raw bytes) ->
    `{"outputs", "step": N+T, "states"?}`"""

    route = "/v1/sessions/{session_id}/step"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        serving: Serving = scope["app"].serving
        service, settings = serving.service, serving.settings
        session_id: str = scope["path_params"]["session_id"]
        head = Head(scope)
        try:
            codec.v1_session_id(session_id)
            if settings.api_key is not None:
                authorize(settings, head.authorization)
            body = await read_body(receive, head, settings.max_body_bytes)
            reply_binary = head.binary_reply
            if head.binary_body:
                request = binary.step_request(body, head.options(scope), reply_binary)
            else:
                request = codec.parse_step(codec.parse_object(body), body, variant=b"bin" if reply_binary else b"")
            if not reply_binary:
                await respond(send, 200, JSON, await service.step(session_id, request, codec.encode_step))
                return 200
            step, tensors, payload = binary.split_step(await service.step(session_id, request, binary.encode_step))
            await respond(send, 200, OCTET_STREAM, payload, [(b"x-step", b"%d" % step), (b"x-tensors", tensors)])
            return 200
        except ClientGone:
            return CLIENT_GONE
        except Exception as exc:
            return await respond_error(send, exc, f"POST {scope['path']}")


class PredictEndpoint:
    """`{"inputs", "mask"?, "initial_state"?, "time_major"?, "return_state"?}` (or raw bytes) ->
    `{"outputs": ..., "states"?: [...]}`"""

    route = "/v1/models/{model}/predict"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        serving: Serving = scope["app"].serving
        service, settings = serving.service, serving.settings
        model: str = scope["path_params"]["model"]
        head = Head(scope)
        try:
            if settings.api_key is not None:
                authorize(settings, head.authorization)
            body = await read_body(receive, head, settings.max_body_bytes)
            if head.binary_body:
                request = binary.predict_request(body, head.options(scope))
            else:
                request = codec.parse_predict(codec.parse_object(body))
            result = await service.predict(model, request)
            if not head.binary_reply:
                await respond(send, 200, JSON, codec.encode_result(result))
                return 200
            payload, tensors = binary.encode_result(result)
            await respond(send, 200, OCTET_STREAM, payload, [(b"x-tensors", tensors.encode())])
            return 200
        except ClientGone:
            return CLIENT_GONE
        except Exception as exc:
            return await respond_error(send, exc, f"POST {scope['path']}")
