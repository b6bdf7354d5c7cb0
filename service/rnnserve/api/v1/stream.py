"""WS /v1/sessions/{id}/stream: each message is one step of the session, answered in order (plain ASGI).

A text message `{"inputs": ..., "seq"?: N, "mask"?, "return_state"?}` gets `{"outputs": ..., "step": N}`, exactly
what POST .../step answers; `{"reset": true | {"layers"?, "states"?}}` resets the session as POST .../reset does
and gets `{"reset": true, "step": 0, "session_id", "layers"?}`. A stream opened with `?shape=B,T,F` (and
optionally `&return_state=true`, `&time_major=true`) also takes binary frames, each one chunk's raw input bytes
with T derived from its length; the reply is a binary frame (see `rnnserve.api.v1.binary`). A bad message gets a
problem object (`type`, `title`, `status`, `detail`) as a text reply and leaves the session unchanged; the stream
goes on.

Closing codes (the edge's, `rnnserve.api.edge`): 1003 for a binary frame on a stream opened without a shape (or
with a bad one), 1008 for a missing API key, 4404 when the session does not exist or has expired, 1011 for an
internal failure. The edge also takes the handshake, renders errors and counts every message.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Message, Receive, Scope, Send

from rnnserve.api import edge
from rnnserve.api.edge import Head, Serving
from rnnserve.api.v1 import binary, codec
from rnnserve.errors import InvalidInput, RnnServeError
from rnnserve.inference import InferenceService, StepRequest
from rnnserve.validation import WIRE_DTYPES


@dataclass(frozen=True)
class BinaryFrames:
    """How a stream reads binary frames: the declared shape, its time axis, the input's value size, options."""

    shape: tuple[int, ...]
    time_axis: int
    itemsize: int
    time_major: bool | None
    return_state: bool


class StreamEndpoint:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Serve one stream until either side closes; returns 101 (the upgrade) for the caller's bookkeeping."""
        serving: Serving = scope["app"].serving
        session_id: str = scope["path_params"]["session_id"]
        head = Head(scope, binary.HEADERS)
        if not await edge.ws_accept(receive, send, head, serving.settings):
            return 101
        what = f"stream of session {session_id!r}"
        try:
            frames = await _binary_frames(serving.service, session_id, binary.options(scope, head))
        except RnnServeError as exc:
            await edge.ws_refuse(send, exc, what)
            return 101
        stream = _Stream(serving.service, session_id, serving.settings.max_body_bytes, frames, send)
        await edge.ws_serve(scope, receive, send, stream.one, what)
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
        self, service: InferenceService, session_id: str, limit: int, frames: BinaryFrames | None, send: Send
    ) -> None:
        self.service, self.session_id = service, session_id
        self.limit, self.frames, self.send = limit, frames, send
        self.what = f"step of session {session_id!r} over the stream"

    async def one(self, message: Message) -> int | None:
        """Answer one message; returns its status, or None when the stream was closed instead."""
        text = message.get("text")
        if text is not None:
            reply, status = await self._step_text(text)
            await edge.send_text(self.send, reply)
            return status
        data: bytes = message.get("bytes") or b""
        if self.frames is None:
            await edge.close(
                self.send, edge.CLOSE_UNSUPPORTED, "open the stream with ?shape=B,T,F to send binary frames"
            )
            return None
        try:
            request = self._binary_request(data, self.frames)
            reply = await self.service.step(self.session_id, request, binary.encode_stream_step)
        except Exception as exc:
            body, status = edge.ws_error(exc, self.what)
            await edge.send_text(self.send, body)
            return status
        await self.send({"type": "websocket.send", "bytes": reply})
        return 200

    async def _step_text(self, text: str) -> tuple[bytes, int]:
        """One text message -> (reply, status); errors become problem replies and leave the session unchanged."""
        try:
            edge.check_size("the message", len(text), self.limit, "characters")
            obj = codec.parse_object(text, "the message")
            if "reset" in obj:
                return await self._reset(obj["reset"]), 200
            request = codec.parse_step(obj, text)
            return await self.service.step(self.session_id, request, codec.encode_step), 200
        except Exception as exc:
            return edge.ws_error(exc, self.what)

    async def _reset(self, value: object) -> bytes:
        """`{"reset": true}` or `{"reset": {"layers"?, "states"?}}`: the session's reset, in the stream's order."""
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise InvalidInput('reset must be true or an object {"layers"?: [...], "states"?: [...]}')
        states, layers = codec.parse_reset(value)
        info = await self.service.reset_session(self.session_id, states, layers)
        return codec.dumps({"reset": True, **codec.reset_json(info, layers)})

    def _binary_request(self, data: bytes, frames: BinaryFrames) -> StepRequest:
        edge.check_size("the frame", len(data), self.limit)
        return StepRequest(
            inputs=binary.frame_inputs(data, frames.shape, frames.time_axis, frames.itemsize),
            time_major=frames.time_major,
            return_state=frames.return_state,
        )  # no seq in a binary frame, so no retry to recognise: no digest


stream_endpoint = StreamEndpoint()
