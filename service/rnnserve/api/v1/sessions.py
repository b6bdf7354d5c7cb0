"""/v1/sessions: stateful streams over HTTP (Keras `stateful=True`).

Step and the WebSocket stream are plain ASGI endpoints (`handlers`, `stream`), hot routes of
`rnnserve.api.routes`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from rnnserve.api.deps import AuthDep, BodyDep, ServiceDep
from rnnserve.api.v1 import codec
from rnnserve.inference import iso8601

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], dependencies=[AuthDep])

JSON = "application/json"


@router.post("", status_code=201)
async def create_session(body: BodyDep, service: ServiceDep) -> Response:
    """`{"model", "batch_size"?: 1, "initial_state"?: [...], "ttl_s"?: 600}` -> 201 session."""
    obj = codec.parse_object(body)
    info = await service.open_session(
        codec.required_str(obj, "model"),
        batch_size=codec.optional_int(obj, "batch_size", minimum=1),
        initial_state=codec.parse_states(obj.get("initial_state"), "initial_state"),
        ttl_s=codec.optional_number(obj, "ttl_s"),
    )
    headers = {"Location": f"/v1/sessions/{info.session_id}"}
    return Response(codec.dumps(codec.session_json(info, with_states=False)), 201, headers, media_type=JSON)


MAX_PAGE = 1000


@router.get("")
async def list_sessions(
    service: ServiceDep,
    model: Annotated[str | None, Query(description="Only the sessions of this model")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="The most sessions on one page")] = 100,
    cursor: Annotated[
        str | None, Query(description="The `next_cursor` of the previous page (absent: the first page)")
    ] = None,
) -> Response:
    """Live sessions in id order, a page at a time: `{"sessions": [{session_id, model, step, batch_size,
    expires_at, created_at}], "next_cursor"}`; `next_cursor` is null after the last page. Reading them renews no
    TTL."""
    page = await service.list_sessions(after=cursor, limit=limit, model=model)
    sessions = [
        {
            "session_id": s.session_id,
            "model": s.model,
            "step": s.step,
            "batch_size": s.batch_size,
            "expires_at": iso8601(s.expires_at),
            "created_at": iso8601(s.created_at),
        }
        for s in page.sessions
    ]
    return Response(codec.dumps({"sessions": sessions, "next_cursor": page.next_cursor}), media_type=JSON)


@router.get("/{session_id}")
async def get_session(session_id: str, service: ServiceDep) -> Response:
    info = await service.get_session(codec.v1_session_id(session_id))
    return Response(codec.dumps(codec.session_json(info, with_states=True)), media_type=JSON)


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: str, service: ServiceDep) -> Response:
    await service.close_session(codec.v1_session_id(session_id))
    return Response(status_code=204)


@router.post("/{session_id}/reset")
async def reset(session_id: str, body: BodyDep, service: ServiceDep) -> Response:
    """`{"states"?: [...], "layers"?: [...]}` (an empty body too) -> `{"step": 0, "session_id", "layers"?}`"""
    codec.v1_session_id(session_id)
    obj = codec.parse_object(body) if body.strip() else {}
    states, layers = codec.parse_reset(obj)
    info = await service.reset_session(session_id, states, layers)
    return Response(codec.dumps(codec.reset_json(info, layers)), media_type=JSON)
