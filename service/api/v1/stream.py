"""WS /v1/sessions/{id}/stream: each message is one step of the session, answered in order (plain ASGI).

A text message `{"inputs": ..., "seq"?: N, "mask"?, "return_state"?}` gets `{"outputs": ..., "step": N}`, exactly
what POST .../step answers. A stream opened with `?shape=B,T,F` (and optionally `&return_state=true`,
`&time_major=true`) also takes binary frames, each one chunk's raw input bytes with T derived from its length;
the reply is a binary frame (see `service.api.v1.binary`). A bad message gets a problem object (`type`, `title`,
`status`, `detail`) as a text reply and leaves the session unchanged; the stream goes on.

Closing codes: 1003 for a binary frame on a stream opened without a shape (or with a bad one), 1008 for a missing
API key, 4404 when the session does not exist or has expired, 1011 for an internal failure.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

from starlette.types import Message, Receive, Scope, Send

from service.api.deps import Serving
from service.api.problems import error_problem, problem
from service.api.v1 import binary, codec
from service.api.v1.asgi import Head, authorize
from service.errors import InvalidInput, PayloadTooLarge, RnnServeError, SessionNotFound, Unauthorized
from service.inference import InferenceService, StepRequest
from service.metrics import Metrics
from service.validation import WIRE_DTYPES

log = logging.getLogger(__name__)

ROUTE = "/v1/sessions/{session_id}/stream"
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_SESSION_GONE = 4404


@dataclass(frozen=True)
class BinaryFrames:
    """How a stream reads binary frames: the declared shape, its time axis, the input's value size, options."""

    shape: tuple[int, ...]
    time_axis: int
    itemsize: int
    time_major: bool | None
    return_state: bool


class StreamEndpoint:
    route = ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Serve one stream until either side closes; returns 101 (the upgrade) for the caller's bookkeeping."""
        serving: Serving = scope["app"].serving
        service = serving.service
        session_id: str = scope["path_params"]["session_id"]
        head = Head(scope)
        if (await receive())["type"] != "websocket.connect":
            return 101
        try:
            authorize(serving.settings, head.authorization)
        except Unauthorized as exc:
            await _close(send, CLOSE_POLICY, exc.detail)
            return 101
        await send({"type": "websocket.accept"})
        try:
            frames = await _binary_frames(service, session_id, head.options(scope))
        except RnnServeError as exc:
            await _send_text(send, codec.dumps(error_problem(exc)))
            gone = isinstance(exc, SessionNotFound)
            await _close(send, CLOSE_SESSION_GONE if gone else CLOSE_UNSUPPORTED, _reason(exc))
            return 101
        stream = _Stream(service, serving.metrics, session_id, serving.settings.max_body_bytes, frames, send)
        try:
            await stream.serve(receive)
        except OSError:  # the client went away while a reply was being sent (uvicorn's ClientDisconnected)
            pass
        except Exception:
            log.exception("stream of session %r failed", session_id)
            with contextlib.suppress(Exception):
                await _close(send, CLOSE_INTERNAL, "internal error")
        return 101


async def _binary_frames(service: InferenceService, session_id: str, options: dict[str, str]) -> BinaryFrames | None:
    """Check the session exists (`SessionNotFound`) and read the binary frame options given at connect."""
    info = await service.get_session(codec.v1_session_id(session_id))
    if "shape" not in options:
        return None
    sig = service.model(info.model).signature
    shape = binary.stream_shape(options)
    if sig is None or len(sig.inputs) != 1:
        raise InvalidInput(f"model {info.model!r} takes several inputs: send them as JSON text messages")
    wire = WIRE_DTYPES.get(sig.inputs[0].dtype)
    if wire is None:
        raise InvalidInput(f"input {sig.inputs[0].name!r} has dtype {sig.inputs[0].dtype!r}: use JSON messages")
    time_major = binary.parse_flag(options, "time_major")
    layout = sig.time_major if time_major is None else time_major
    return_state = bool(binary.parse_flag(options, "return_state"))
    return BinaryFrames(shape, 0 if layout else 1, wire.itemsize, time_major, return_state)


class _Stream:
    def __init__(
        self,
        service: InferenceService,
        metrics: Metrics,
        session_id: str,
        limit: int,
        frames: BinaryFrames | None,
        send: Send,
    ) -> None:
        self.service, self.metrics, self.session_id = service, metrics, session_id
        self.limit, self.frames, self.send = limit, frames, send

    async def serve(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            started = time.perf_counter()
            status = await self._one(message)
            if status is None:
                return
            self.metrics.observe(ROUTE, "WS", status, time.perf_counter() - started)
            if status == SessionNotFound.status:
                await _close(self.send, CLOSE_SESSION_GONE, "session not found")
                return

    async def _one(self, message: Message) -> int | None:
        """Answer one message; returns its status, or None when the stream was closed instead."""
        text = message.get("text")
        if text is not None:
            reply, status = await self._step_text(text)
            await _send_text(self.send, reply)
            return status
        data: bytes = message.get("bytes") or b""
        if self.frames is None:
            await _close(self.send, CLOSE_UNSUPPORTED, "open the stream with ?shape=B,T,F to send binary frames")
            return None
        try:
            request = self._binary_request(data, self.frames)
            reply = await self.service.step(self.session_id, request, binary.encode_stream_step)
        except Exception as exc:
            body, status = _problem(exc, self.session_id)
            await _send_text(self.send, body)
            return status
        await self.send({"type": "websocket.send", "bytes": reply})
        return 200

    async def _step_text(self, text: str) -> tuple[bytes, int]:
        """One text message -> (reply, status); errors become problem replies and leave the session unchanged."""
        try:
            if len(text) > self.limit:
                raise PayloadTooLarge(f"the message has {len(text)} characters; the limit is {self.limit} bytes")
            request = codec.parse_step(codec.parse_object(text, "the message"), text)
            return await self.service.step(self.session_id, request, codec.encode_step), 200
        except Exception as exc:
            return _problem(exc, self.session_id)

    def _binary_request(self, data: bytes, frames: BinaryFrames) -> StepRequest:
        if len(data) > self.limit:
            raise PayloadTooLarge(f"the frame has {len(data)} bytes; the limit is {self.limit}")
        return StepRequest(
            inputs=binary.frame_inputs(data, frames.shape, frames.time_axis, frames.itemsize),
            time_major=frames.time_major,
            return_state=frames.return_state,
        )  # no seq in a binary frame, so no retry to recognise: no digest


def _problem(exc: Exception, session_id: str) -> tuple[bytes, int]:
    if isinstance(exc, RnnServeError):
        return codec.dumps(error_problem(exc)), int(exc.status)
    log.error("step of session %r over the stream failed", session_id, exc_info=exc)
    return codec.dumps(problem(500, f"internal error ({type(exc).__name__}); see the server log")), 500


def _reason(exc: RnnServeError) -> str:
    return "session not found" if isinstance(exc, SessionNotFound) else exc.detail[:120]


async def _send_text(send: Send, body: bytes) -> None:
    await send({"type": "websocket.send", "text": body.decode()})


async def _close(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": code, "reason": reason})
