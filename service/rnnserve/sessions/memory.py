"""The in-process session store: a dict of compact session slots, a FIFO lock per session, TTL expiry and a cap.

A slot keeps a session's states as one bytes value (float32, in signature order) with their shapes shared
between sessions of one layout, and its scalars in `__slots__`: an idle SessionRecord with one 128-unit state
costs about 900 bytes instead of 1.1 KiB. `get` rebuilds an immutable `SessionRecord` whose states are read-only
views of that bytes value; `commit` packs the new record's states into a new one.

Expired sessions disappear on their next access and, in the background, on a periodic sweep, so memory is
returned even for sessions nobody touches again. The cap makes `create` answer `TooManySessions` (429) instead of
growing without bound; live sessions are never evicted to make room.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import numpy as np

from rnnserve.errors import SeqConflict, SessionNotFound, TooManySessions
from rnnserve.sessions.base import (
    SessionEvents,
    SessionPage,
    SessionRecord,
    SessionSummary,
    over_budget,
    owned_by,
    state_bytes,
)
from rnnserve.sessions.locks import SessionLocks

log = logging.getLogger(__name__)


Shapes = tuple[tuple[int, ...], ...]
_FLOAT32 = np.dtype(np.float32)


class _Slot:
    """One session, compactly (see the module docstring). `shapes` is shared by sessions of one state layout."""

    __slots__ = ("model", "batch_size", "shapes", "blob", "ttl_s", "expires_at", "created_at", "step", "version",
                 "prev_step", "last_digest", "last_response", "owner")  # fmt: skip

    def __init__(self, record: SessionRecord, shapes: Shapes) -> None:
        self.model = record.model
        self.batch_size = record.batch_size
        self.created_at = record.created_at
        self.owner = record.owner
        self.install(record, shapes)

    def install(self, record: SessionRecord, shapes: Shapes) -> None:
        """Take over what a committed record changes (the slot is updated in place)."""
        self.shapes = shapes
        self.blob = _pack(record.states)
        self.ttl_s = record.ttl_s
        self.expires_at = record.expires_at
        self.step = record.step
        self.version = record.version
        self.prev_step = record.prev_step
        self.last_digest = record.last_digest
        self.last_response = record.last_response

    def record(self, session_id: str) -> SessionRecord:
        return SessionRecord(
            session_id,
            self.model,
            self.batch_size,
            _unpack(self.blob, self.shapes),
            self.ttl_s,
            self.expires_at,
            self.created_at,
            self.step,
            self.version,
            self.prev_step,
            self.last_digest,
            self.last_response,
            self.owner,
        )


def _pack(states: Sequence[np.ndarray]) -> bytes:
    if len(states) == 1:
        return np.ascontiguousarray(states[0], dtype=_FLOAT32).tobytes()
    return b"".join(np.ascontiguousarray(s, dtype=_FLOAT32).tobytes() for s in states)


def _unpack(blob: bytes, shapes: Shapes) -> tuple[np.ndarray, ...]:
    """Read-only float32 views of `blob`, one per shape."""
    if len(shapes) == 1:
        return (np.frombuffer(blob, _FLOAT32).reshape(shapes[0]),)
    views = []
    offset = 0
    for shape in shapes:
        count = math.prod(shape)
        views.append(np.frombuffer(blob, _FLOAT32, count, offset).reshape(shape))
        offset += count * _FLOAT32.itemsize
    return tuple(views)


class MemorySessionStore:
    """A `SessionStore` for one process. Not shared between workers or replicas: use Redis for that."""

    def __init__(
        self,
        *,
        max_sessions: int,
        max_state_bytes: int | None = None,
        events: SessionEvents | None = None,
        sweep_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`max_state_bytes`: the most bytes every session's states may take together (None: no budget)."""
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self.max_state_bytes = max_state_bytes
        self._events = events
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self.state_bytes = 0  # the bytes of every live session's states (the data plane's state budget reads it)
        self._shapes: dict[Shapes, Shapes] = {}  # one shared tuple per state layout
        self._locks = SessionLocks()
        self._sweeper: asyncio.Task[None] | None = None

    # ---- SessionStore ----------------------------------------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        self._start_sweeper()
        if len(self._slots) >= self.max_sessions:
            self.sweep()
        if len(self._slots) >= self.max_sessions:
            raise TooManySessions(
                f"the server holds its maximum of {self.max_sessions} sessions; "
                "delete finished sessions or wait for idle ones to expire"
            )
        if record.session_id in self._slots:
            raise ValueError(f"session id {record.session_id!r} already exists")
        budget = self.max_state_bytes
        if budget is not None:
            size = state_bytes(record.states)
            if self.state_bytes + size > budget:
                self.sweep()  # expired sessions give their bytes back first
                if self.state_bytes + size > budget:
                    raise over_budget(self.state_bytes, self.state_bytes + size, budget)
        slot = self._slots[record.session_id] = _Slot(record, self._layout(record.states))
        self.state_bytes += len(slot.blob)

    async def get(self, session_id: str) -> SessionRecord:
        slot = self._live(session_id)
        slot.expires_at = self._clock() + slot.ttl_s
        return slot.record(session_id)

    async def load(self, session_id: str) -> tuple[SessionRecord, bool]:
        return await self.get(session_id), True

    async def commit(self, record: SessionRecord, expected_version: int) -> None:
        current = self._live(record.session_id)
        if current.version != expected_version:
            raise SeqConflict(
                f"session {record.session_id!r} changed while this request ran (now at step {current.step})",
                step=current.step,
            )
        held = len(current.blob)
        current.install(record, self._layout(record.states))
        self.state_bytes += len(current.blob) - held

    async def delete(self, session_id: str) -> bool:
        slot = self._slots.pop(session_id, None)
        if slot is None:
            return False
        self.state_bytes -= len(slot.blob)
        return True

    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(session_id)

    async def count(self) -> int:
        self.sweep()
        return len(self._slots)

    async def usage(self, owner: str) -> tuple[int, int]:
        """One pass over this process's sessions (no copies)."""
        self.sweep()
        sessions = held = 0
        for slot in self._slots.values():
            if slot.owner == owner:
                sessions += 1
                held += len(slot.blob)
        return sessions, held

    async def scan(
        self, *, after: str | None = None, limit: int = 100, model: str | None = None, owner: str | None = None
    ) -> SessionPage:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.sweep()
        ids = heapq.nsmallest(
            limit + 1,
            (
                sid
                for sid, slot in self._slots.items()
                if (after is None or sid > after) and (model is None or slot.model == model) and owned_by(slot, owner)
            ),
        )
        shown = ids[:limit]
        page = [self._summary(sid) for sid in shown]
        return SessionPage(page, shown[-1] if len(ids) > limit else None)

    def _summary(self, session_id: str) -> SessionSummary:
        slot = self._slots[session_id]
        return SessionSummary(
            session_id, slot.model, slot.step, slot.expires_at, slot.created_at, slot.batch_size, slot.owner
        )

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._slots.clear()
        self.state_bytes = 0

    # ---- expiry ----------------------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Drop every expired session now; returns how many."""
        now = self._clock()
        expired = [sid for sid, slot in self._slots.items() if slot.expires_at <= now]
        for sid in expired:
            self.state_bytes -= len(self._slots.pop(sid).blob)
        if expired and self._events is not None:
            self._events.expired(len(expired))
        return len(expired)

    def _live(self, session_id: str) -> _Slot:
        slot = self._slots.get(session_id)
        if slot is None:
            raise SessionNotFound(f"no session {session_id!r} (never created, deleted or expired)")
        if slot.expires_at <= self._clock():
            self.state_bytes -= len(self._slots.pop(session_id).blob)
            if self._events is not None:
                self._events.expired(1)
            raise SessionNotFound(f"session {session_id!r} expired after {slot.ttl_s:g} s without use")
        return slot

    def _layout(self, states: Sequence[np.ndarray]) -> Shapes:
        shapes = tuple([s.shape for s in states])
        return self._shapes.setdefault(shapes, shapes)

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            # Created lazily: the store may be built before the event loop that serves it runs.
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="rnnserve-sweeper")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                self.sweep()
            except Exception:  # a failed sweep must not stop the next one
                log.exception("session sweep failed")
