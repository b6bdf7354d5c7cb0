"""The in-process session store: a dict of immutable records, a FIFO lock per session, TTL expiry and a cap.

Expired sessions disappear on their next access and, in the background, on a periodic sweep, so memory is
returned even for sessions nobody touches again. The cap makes `create` answer `TooManySessions` (429) instead of
growing without bound; live sessions are never evicted to make room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

from service.errors import SeqConflict, SessionNotFound, TooManySessions
from service.sessions.base import SessionEvents, SessionRecord
from service.sessions.locks import SessionLocks

log = logging.getLogger(__name__)


class MemorySessionStore:
    """A `SessionStore` for one process. Not shared between workers or replicas: use Redis for that."""

    def __init__(
        self,
        *,
        max_sessions: int,
        events: SessionEvents | None = None,
        sweep_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self._events = events
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._records: dict[str, SessionRecord] = {}
        self._locks = SessionLocks()
        self._sweeper: asyncio.Task[None] | None = None

    # ---- SessionStore ----------------------------------------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        self._start_sweeper()
        if len(self._records) >= self.max_sessions:
            self.sweep()
        if len(self._records) >= self.max_sessions:
            raise TooManySessions(
                f"the server holds its maximum of {self.max_sessions} sessions; "
                "delete finished sessions or wait for idle ones to expire"
            )
        if record.session_id in self._records:
            raise ValueError(f"session id {record.session_id!r} already exists")
        self._records[record.session_id] = record

    async def get(self, session_id: str) -> SessionRecord:
        record = self._live(session_id)
        renewed = replace(record, expires_at=self._clock() + record.ttl_s)
        self._records[session_id] = renewed
        return renewed

    async def commit(self, record: SessionRecord, expected_version: int) -> None:
        current = self._live(record.session_id)
        if current.version != expected_version:
            raise SeqConflict(
                f"session {record.session_id!r} changed while this request ran (now at step {current.step})",
                step=current.step,
            )
        self._records[record.session_id] = record

    async def delete(self, session_id: str) -> bool:
        return self._records.pop(session_id, None) is not None

    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(session_id)

    async def count(self) -> int:
        self.sweep()
        return len(self._records)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._records.clear()

    # ---- expiry ----------------------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Drop every expired session now; returns how many."""
        now = self._clock()
        expired = [sid for sid, record in self._records.items() if record.expires_at <= now]
        for sid in expired:
            del self._records[sid]
        if expired and self._events is not None:
            self._events.expired(len(expired))
        return len(expired)

    def _live(self, session_id: str) -> SessionRecord:
        record = self._records.get(session_id)
        if record is None:
            raise SessionNotFound(f"no session {session_id!r} (never created, deleted or expired)")
        if record.expires_at <= self._clock():
            del self._records[session_id]
            if self._events is not None:
                self._events.expired(1)
            raise SessionNotFound(f"session {session_id!r} expired after {record.ttl_s:g} s without use")
        return record

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
