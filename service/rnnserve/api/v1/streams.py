"""WS /v1/streams: one WebSocket carrying the steps of many sessions, of one model or several (plain ASGI).

A gateway, a game server or a sensor hub forwards thousands of users' streams together: one message per step per
session would pay the WebSocket's per-message cost in uvicorn for each, a cost comparable to the step's own work
(bench/README.md, "Where the time goes"). Here one binary frame holds a batch of step records and one reply frame
their results: the frame's records go to the data plane together (`rnnserve.multistep.step_many`), which runs the
steps of one model as one model call (up to `max_request_batch` rows each) and does the per-call work once. The JSON
form's records are submitted concurrently, in one event-loop iteration, so the dynamic batcher merges them.

Sessions are bound to the stream by index (0, 1, 2, ... in the order they are bound): opened on the stream, or
opened through POST /v1/sessions and attached, with JSON control messages (below). The index is the stream's own
name for a session; the session is the same one /v1 and /v2 step, with the same semantics: steps of one session
apply in the order they are sent (records in a frame, frames in the stream), a record with `seq` is checked
against the session's step (a stale one answers 409, an exact retry of the last step answers its cached reply),
and every step renews the session's TTL.

Binary frames (little-endian; layout version 1; see docs/API.md for a worked example):

    frame   = version u8 (1) | kind u8 (1: steps, 2: results) | reserved u16 (0) | count u32 | count records
    step    = index u32 | flags u32 (bit 0: seq given, bit 1: return_state) | seq u64 | length u32 | input bytes
    result  = index u32 | status u16 | reserved u16 | length u32 | body
              body: status 200: step u64 (the session's step after the record) | outputs' float32 bytes (then
              states with return_state); otherwise the record's problem object as UTF-8 JSON

A record's input bytes are one chunk of the session's single input, in the model's layout and dtype (float32, or
int64 token ids): (batch_size, T, features...) or, for a time-major model, (T, batch_size, features...), with T
from the length. A record that fails (unknown index, stale seq, bad length) gets its own problem result and the
rest of the frame is served. A frame that cannot be read at all gets a problem object as a text reply.

Text messages (the JSON form, for debugging, and the control messages), each answered by one text reply:

    {"open": [{"model", "batch_size"?, "ttl_s"?, "initial_state"?}, ...]}  -> {"opened": [session | problem]}
    {"attach": ["session id", ...]}                                        -> {"attached": [session | problem]}
    {"detach": [index, ...]}                                               -> {"detached": [index, ...]}
    {"close": [index, ...]}                                                -> {"closed": [{"index"} | problem]}
    {"steps": [{"session": index | "id", "seq"?, "inputs", "mask"?, "return_state"?}, ...]}
        -> {"results": [{"session", "outputs", "step", "states"?} | {"session", "problem"}]}
    {"reset": [{"session": index | "id", "layers"?: ["name", ...], "states"?: [...]}, ...]}
        -> {"reset": [{"session", "step": 0, "session_id", "layers"?} | {"session", "problem"}]}

where a session is `{"index", "session_id", "model", "batch_size", "step", "expires_at"}` and a problem is
`{"problem": {type, title, status, detail}}`. A message holds one of these keys; a message that cannot be read
gets a problem object as its reply.

A reset record resets its session as POST /v1/sessions/{id}/reset does: every state to zeros, or with `layers`
only those Keras layers' states (`model.layers[i].reset_states()`), with `states` to those values (for the named
layers only, in signature order); the session's step goes back to 0. Messages are answered one at a time, in the
order sent (a frame's steps are committed before the next message is read), so a reset applies after every step
sent before it and before every step sent after it; a message's reset records apply one after another, in order.
A record that fails (unknown index or id, unknown layer, states of the wrong shape) gets its own problem and
changes nothing; the message's other records are served.
"""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import orjson
from starlette.types import Message, Receive, Scope, Send

from rnnserve.api import edge
from rnnserve.api.edge import Head, Serving
from rnnserve.api.v1 import binary, codec
from rnnserve.errors import InvalidInput, SessionNotFound
from rnnserve.inference import InferenceService, SessionInfo
from rnnserve.multistep import RawStep, step_many
from rnnserve.validation import WIRE_DTYPES

VERSION = 1
STEPS = 1
RESULTS = 2
FRAME = struct.Struct("<BBHI")  # version, kind, reserved, record count
STEP = struct.Struct("<IIQI")  # session index, flags, seq, length of the input bytes
RESULT = struct.Struct("<IHHI")  # session index, status, reserved, length of the body
HAS_SEQ = 1
RETURN_STATE = 2
MAX_RECORDS = 65536
_DIGEST_KIND = b"streams"
_MESSAGES = ("steps", "reset", "open", "attach", "detach", "close")
_KEYS = ", ".join(f'"{key}"' for key in _MESSAGES)


@dataclass(frozen=True, slots=True)
class Bound:
    """A session bound to the stream: its id, model, and how its binary records read (shape with a placeholder
    T, the time axis, the input's value size), or `binary` None when its model takes JSON only."""

    session_id: str
    model: str
    shape: tuple[int, ...]
    time_axis: int
    itemsize: int
    step_bytes: int
    binary: str | None  # None: binary records are fine; else why not


class StreamsEndpoint:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Serve one multiplexed stream until either side closes; returns 101 (the upgrade)."""
        serving: Serving = scope["app"].serving
        head = Head(scope)
        if not await edge.ws_accept(receive, send, head, serving.settings):
            return 101
        streams = Streams(serving.service, serving.settings.max_body_bytes, send)
        await edge.ws_serve(scope, receive, send, streams.one, "multiplexed stream")
        return 101


class Streams:
    """One connection's session table and its messages."""

    def __init__(self, service: InferenceService, limit: int, send: Send) -> None:
        self.service, self.limit, self.send = service, limit, send
        self.table: list[Bound | None] = []

    async def one(self, message: Message) -> int:
        """Answer one message (a text reply, or a binary frame of results); returns its status for the metrics:
        200 when the message was read (its records may still have failed one by one), else its problem's."""
        text = message.get("text")
        if text is not None:
            try:
                edge.check_size("the message", len(text), self.limit, "characters")
                reply = await self._text(codec.parse_object(text, "the message"))
            except Exception as exc:
                body, status = edge.ws_error(exc, "a message of a multiplexed stream")
                await edge.send_text(self.send, body)
                return _not_gone(status)
            await edge.send_text(self.send, reply)
            return 200
        data: bytes = message.get("bytes") or b""
        try:
            edge.check_size("the frame", len(data), self.limit)
            records = read_frame(data)
        except Exception as exc:
            body, status = edge.ws_error(exc, "a frame of a multiplexed stream")
            await edge.send_text(self.send, body)
            return _not_gone(status)
        await self.send({"type": "websocket.send", "bytes": await self._frame(records)})
        return 200

    # ---- binary frames -----------------------------------------------------------------------------------------

    async def _frame(self, records: list[tuple[int, int, int, memoryview]]) -> bytes:
        """Every record's step at once (`rnnserve.multistep`: one model call per model), results in order."""
        table = self.table
        size = len(table)
        outcomes: list[bytes | BaseException | None] = []
        steps: list[RawStep] = []
        at: list[int] = []
        for number, (index, flags, seq, data) in enumerate(records):
            try:
                steps.append(_raw_step(table[index] if index < size else None, index, flags, seq, data))
            except Exception as exc:
                outcomes.append(exc)
                continue
            outcomes.append(None)
            at.append(number)
        if steps:
            for number, outcome in zip(
                at, await step_many(self.service, steps, binary.encode_stream_step), strict=True
            ):
                outcomes[number] = outcome
        parts = [FRAME.pack(VERSION, RESULTS, 0, len(records))]
        for (index, _, _, _), result in zip(records, outcomes, strict=True):
            if isinstance(result, bytes):
                parts.append(RESULT.pack(index, 200, 0, len(result)))
                parts.append(result)
            else:
                problem = edge.describe(result or RuntimeError("no outcome"), "a record of a multiplexed stream")
                body = edge.dumps(problem)
                parts.append(RESULT.pack(index, int(problem["status"]), 0, len(body)))
                parts.append(body)
        return b"".join(parts)

    # ---- text messages -----------------------------------------------------------------------------------------

    async def _text(self, obj: dict[str, Any]) -> bytes:
        keys = [key for key in _MESSAGES if key in obj]
        if len(keys) > 1:
            raise InvalidInput(f"a message of a multiplexed stream holds one of {_KEYS}, got {keys}")
        if "steps" in obj:
            return await self._json_steps(_list(obj, "steps"))
        if "reset" in obj:
            return edge.dumps({"reset": [await self._reset(entry) for entry in _list(obj, "reset")]})
        if "open" in obj:
            value = obj["open"]
            entries = value if isinstance(value, list) else [value]
            return edge.dumps({"opened": [await self._open(entry) for entry in entries]})
        if "attach" in obj:
            return edge.dumps({"attached": [await self._attach(entry) for entry in _list(obj, "attach")]})
        if "detach" in obj:
            return edge.dumps({"detached": [self._detach(entry) for entry in _list(obj, "detach")]})
        if "close" in obj:
            return edge.dumps({"closed": [await self._close(entry) for entry in _list(obj, "close")]})
        raise InvalidInput(f"a message of a multiplexed stream holds one of {_KEYS}")

    async def _open(self, entry: object) -> dict[str, Any]:
        try:
            if not isinstance(entry, dict):
                raise InvalidInput('each "open" entry is an object {"model", "batch_size"?, "ttl_s"?, ...}')
            info = await self.service.open_session(
                codec.required_str(entry, "model"),
                batch_size=codec.optional_int(entry, "batch_size", minimum=1),
                initial_state=codec.parse_states(entry.get("initial_state"), "initial_state"),
                ttl_s=codec.optional_number(entry, "ttl_s"),
            )
            return self._bind(info)
        except Exception as exc:
            return {"problem": edge.describe(exc, "an open on a multiplexed stream")}

    async def _attach(self, entry: object) -> dict[str, Any]:
        try:
            if not isinstance(entry, str) or not entry:
                raise InvalidInput('each "attach" entry is a session id (a string)')
            return self._bind(await self.service.get_session(codec.v1_session_id(entry)))
        except Exception as exc:
            return {"problem": edge.describe(exc, "an attach on a multiplexed stream")}

    def _bind(self, info: SessionInfo) -> dict[str, Any]:
        index = len(self.table)
        self.table.append(bind(self.service, info))
        return {"index": index, **codec.session_json(info, with_states=False)}

    def _detach(self, entry: object) -> int | dict[str, Any]:
        if isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry < len(self.table):
            self.table[entry] = None
            return entry
        return {"problem": edge.describe(_unknown_index(entry), "a detach on a multiplexed stream")}

    async def _close(self, entry: object) -> dict[str, Any]:
        try:
            bound = self._lookup(entry)
            await self.service.close_session(bound.session_id)
            self.table[cast(int, entry)] = None  # _lookup checked it is an index
            return {"index": entry}
        except Exception as exc:
            return {"problem": edge.describe(exc, "a close on a multiplexed stream")}

    async def _reset(self, entry: object) -> dict[str, Any]:
        """One reset record, applied before the next one (records naming one session apply in order)."""
        name = entry.get("session") if isinstance(entry, dict) else None
        try:
            if not isinstance(entry, dict) or "session" not in entry:
                raise InvalidInput('each "reset" entry is an object {"session", "layers"?, "states"?}')
            session_id = self._session_id(name)
            states, layers = codec.parse_reset(entry)
            info = await self.service.reset_session(session_id, states, layers)
            return {"session": name, **codec.reset_json(info, layers)}
        except Exception as exc:
            return {"session": name, "problem": edge.describe(exc, "a reset on a multiplexed stream")}

    def _session_id(self, name: object) -> str:
        """A record's session: an index bound to this stream, or a session id."""
        return codec.v1_session_id(name) if isinstance(name, str) else self._lookup(name).session_id

    def _lookup(self, index: object) -> Bound:
        table = self.table
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(table):
            bound = table[index]
            if bound is not None:
                return bound
        raise _unknown_index(index)

    async def _json_steps(self, entries: list[Any]) -> bytes:
        steps = [self._json_step(entry) for entry in entries]
        results = await asyncio.gather(*steps, return_exceptions=True)
        parts = []
        for entry, result in zip(entries, results, strict=True):
            name = entry.get("session") if isinstance(entry, dict) else None
            tag = b'{"session":' + orjson.dumps(name)
            if isinstance(result, bytes):  # {"outputs": ..., "step": N}: spliced after the session
                parts.append(tag + b"," + result[1:])
            else:
                problem = edge.describe(result, "a step of a multiplexed stream")
                parts.append(tag + b',"problem":' + edge.dumps(problem) + b"}")
        return b'{"results":[' + b",".join(parts) + b"]}"

    async def _json_step(self, entry: object) -> bytes:
        if not isinstance(entry, dict):
            raise InvalidInput('each "steps" entry is an object {"session", "inputs", "seq"?, ...}')
        session_id = self._session_id(entry.get("session"))
        digest_of = {key: value for key, value in entry.items() if key != "session"}
        request = codec.parse_step(entry, orjson.dumps(digest_of), variant=_DIGEST_KIND)
        return await self.service.step(session_id, request, codec.encode_step)


def bind(service: InferenceService, info: SessionInfo) -> Bound:
    """How a session's binary records read, from its model's signature."""
    sig = service.model(info.model).signature
    reason = None
    features: tuple[int, ...] = ()
    itemsize = 4
    time_axis = 1
    if sig is None or len(sig.inputs) != 1:
        reason = f"model {info.model!r} takes several inputs: step its sessions with JSON messages"
    else:
        wire = WIRE_DTYPES.get(sig.inputs[0].dtype)
        dims = sig.inputs[0].shape[2:]
        if wire is None:
            reason = f"input {sig.inputs[0].name!r} has dtype {sig.inputs[0].dtype!r}: use JSON messages"
        elif any(d is None for d in dims):
            reason = f"input {sig.inputs[0].name!r} has free feature dimensions: use JSON messages"
        else:
            itemsize = wire.itemsize
            features = tuple(int(d) for d in dims if d is not None)
            time_axis = 0 if sig.time_major else 1
    batch = info.batch_size
    shape = (0, batch, *features) if time_axis == 0 else (batch, 0, *features)
    step_bytes = batch * math.prod(features) * itemsize
    return Bound(info.session_id, info.model, shape, time_axis, itemsize, step_bytes, reason)


def read_frame(data: bytes) -> list[tuple[int, int, int, memoryview]]:
    """A steps frame's records as (index, flags, seq, input bytes); `InvalidInput` when the frame cannot be read
    (its version, kind, or a record's length past the end)."""
    if len(data) < FRAME.size:
        raise InvalidInput(f"a frame of {len(data)} bytes is shorter than the {FRAME.size}-byte frame header")
    version, kind, _, count = FRAME.unpack_from(data)
    if version != VERSION:
        raise InvalidInput(f"frame layout version {version} is not supported; this server reads version {VERSION}")
    if kind != STEPS:
        raise InvalidInput(f"a client frame is of kind {STEPS} (steps), got {kind}")
    if count > MAX_RECORDS:
        raise InvalidInput(f"a frame holds at most {MAX_RECORDS} records, got {count}")
    view = memoryview(data)
    records = []
    offset = FRAME.size
    unpack = STEP.unpack_from
    header = STEP.size
    for number in range(count):
        if offset + header > len(data):
            raise InvalidInput(f"record {number} of {count} is past the end of the {len(data)}-byte frame")
        index, flags, seq, length = unpack(data, offset)
        offset += header
        if offset + length > len(data):
            raise InvalidInput(f"record {number} says {length} input bytes, past the end of the frame")
        records.append((index, flags, seq, view[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise InvalidInput(f"the frame has {len(data) - offset} bytes after its {count} records")
    return records


def _raw_step(bound: Bound | None, index: int, flags: int, seq: int, data: memoryview) -> RawStep:
    """One binary record as a step of its session; raises for a record that cannot be one (its problem)."""
    if bound is None:
        raise _unknown_index(index)
    if bound.binary is not None:
        raise InvalidInput(bound.binary)
    length = len(data)
    if length == 0 or length % bound.step_bytes:
        raise InvalidInput(
            f"a record of {length} bytes is not a whole number of timesteps of {bound.step_bytes} bytes for "
            f"session index {index} (model {bound.model!r})"
        )
    shape = list(bound.shape)
    shape[bound.time_axis] = length // bound.step_bytes
    return_state = bool(flags & RETURN_STATE)
    digest = None
    if flags & HAS_SEQ:
        digest = partial(binary.request_digest, data.tobytes(), _DIGEST_KIND, return_state)
    return RawStep(bound.session_id, data, tuple(shape), seq if flags & HAS_SEQ else None, return_state, digest)


def _unknown_index(index: object) -> SessionNotFound:
    return SessionNotFound(f"no session at index {index!r} of this stream (never bound, detached or closed)")


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj[key]
    if not isinstance(value, list):
        raise InvalidInput(f'"{key}" must be a list')
    return value


def _not_gone(status: int) -> int:
    """A message's status for the edge, which closes a stream on 404 (a /v1 stream's session is gone): on a
    multiplexed stream a missing session fails its record only."""
    return 400 if status == SessionNotFound.status else status


streams_endpoint = StreamsEndpoint()
