"""WS /v1/sessions/{id}/stream: each text message is one step of the session, answered in order.

A message `{"inputs": ..., "seq"?: N, "mask"?, "return_state"?}` gets `{"outputs": ..., "step": N}`, exactly what
POST .../step answers. A bad message gets a problem object (`type`, `title`, `status`, `detail`) as its reply and
leaves the session unchanged; the stream goes on. Closing codes: 1003 for a binary frame, 1008 for a missing API
key, 4404 when the session does not exist or has expired, 1011 for an internal failure.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter
from starlette.websockets import WebSocket, WebSocketDisconnect

from service.api.deps import check_api_key, state
from service.api.problems import error_problem, problem
from service.api.v1 import codec
from service.errors import PayloadTooLarge, RnnServeError, SessionNotFound, Unauthorized
from service.inference import InferenceService

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

ROUTE = "/v1/sessions/{session_id}/stream"
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_SESSION_GONE = 4404


@router.websocket("/{session_id}/stream")
async def stream(websocket: WebSocket, session_id: str) -> None:
    try:
        check_api_key(websocket)
    except Unauthorized as exc:
        await websocket.close(code=CLOSE_POLICY, reason=exc.detail)
        return
    service = state(websocket).service
    await websocket.accept()
    try:
        await service.get_session(session_id)
    except SessionNotFound as exc:
        await websocket.send_text(codec.dumps(error_problem(exc)).decode())
        await websocket.close(code=CLOSE_SESSION_GONE, reason="session not found")
        return
    try:
        await _serve(websocket, service, session_id)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("stream of session %r failed", session_id)
        await websocket.close(code=CLOSE_INTERNAL, reason="internal error")


async def _serve(websocket: WebSocket, service: InferenceService, session_id: str) -> None:
    app = state(websocket)
    limit, metrics = app.settings.max_body_bytes, app.metrics
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await websocket.close(code=CLOSE_UNSUPPORTED, reason="send steps as JSON text messages")
            return
        started = time.perf_counter()
        reply, status = await _step(service, session_id, text, limit)
        await websocket.send_text(reply.decode())
        metrics.observe(ROUTE, "WS", status, time.perf_counter() - started)
        if status == SessionNotFound.status:
            await websocket.close(code=CLOSE_SESSION_GONE, reason="session not found")
            return


async def _step(service: InferenceService, session_id: str, text: str, limit: int) -> tuple[bytes, int]:
    """One message -> (reply, status). Domain errors become problem replies; the session is unchanged by them."""
    try:
        if len(text) > limit:
            raise PayloadTooLarge(f"the message has {len(text)} characters; the limit is {limit} bytes")
        request = codec.parse_step(codec.parse_object(text, "the message"), text)
        return await service.step(session_id, request, codec.encode_step), 200
    except RnnServeError as exc:
        return codec.dumps(error_problem(exc)), int(exc.status)
    except Exception as exc:
        log.exception("step of session %r over the stream failed", session_id)
        return codec.dumps(problem(500, f"internal error ({type(exc).__name__}); see the server log")), 500
