"""Per-session FIFO locks for one process: requests on one session run one at a time, in arrival order.

A lock nobody waits for costs one dict entry: the common case on the step hot path (one request per session at
a time) allocates nothing else. Waiters queue Futures, and `release` hands the lock to the first of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType


class SessionLocks:
    """One FIFO lock per session id, kept only while someone holds or awaits it."""

    def __init__(self) -> None:
        # session id -> waiters of its holder (None: held, nobody waiting)
        self._held: dict[str, deque[asyncio.Future[None]] | None] = {}

    def hold(self, session_id: str) -> _Hold:
        """`async with locks.hold(session_id):` runs the block while holding that session's lock."""
        return _Hold(self, session_id)

    def take_if_free(self, session_id: str) -> bool:
        """Take the lock when nobody holds it (no coroutine: the hot path's common case); False when held."""
        if session_id in self._held:
            return False
        self._held[session_id] = None
        return True

    async def wait_turn(self, session_id: str) -> None:
        """Queue behind the holder of a held lock and return holding it."""
        held = self._held
        waiters = held[session_id]
        if waiters is None:
            waiters = held[session_id] = deque()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(session_id)  # the lock was handed over just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    waiters.remove(turn)
            raise

    def release(self, session_id: str) -> None:
        waiters = self._held[session_id]
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the first waiter holds it now
                return
        del self._held[session_id]

    def __len__(self) -> int:
        """How many sessions have a holder or a waiter now."""
        return len(self._held)


class _Hold:
    __slots__ = ("_locks", "_session_id")

    def __init__(self, locks: SessionLocks, session_id: str) -> None:
        self._locks, self._session_id = locks, session_id

    async def __aenter__(self) -> None:
        if not self._locks.take_if_free(self._session_id):
            await self._locks.wait_turn(self._session_id)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._locks.release(self._session_id)
