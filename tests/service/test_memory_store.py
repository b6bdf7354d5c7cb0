"""What the in-memory store adds to the shared SessionStore contract (tests/sessions): background expiry and
the bookkeeping that keeps its memory bounded."""

from __future__ import annotations

import asyncio

import numpy as np

from rnnserve.sessions.base import SessionRecord
from rnnserve.sessions.memory import MemorySessionStore


class Events:
    def __init__(self) -> None:
        self.expired_n = 0
        self.evicted_n = 0

    def expired(self, n: int = 1) -> None:
        self.expired_n += n

    def evicted(self, n: int = 1) -> None:
        self.evicted_n += n


def record(session_id: str, ttl_s: float, now: float) -> SessionRecord:
    states = (np.zeros((1, 2), dtype=np.float32),)
    return SessionRecord(session_id, "m", 1, states, ttl_s=ttl_s, expires_at=now + ttl_s, created_at=now)


async def test_the_sweeper_drops_sessions_nobody_touches_again() -> None:
    clock = [1000.0]
    events = Events()
    store = MemorySessionStore(max_sessions=10, events=events, sweep_interval_s=0.01, clock=lambda: clock[0])
    try:
        await store.create(record("old", 5.0, clock[0]))
        await store.create(record("young", 50.0, clock[0]))
        clock[0] += 10.0
        await asyncio.sleep(0.05)  # a few sweeps, and no access to the session
        assert events.expired_n == 1
        assert await store.count() == 1
        assert (await store.get("young")).session_id == "young"
    finally:
        await store.aclose()


async def test_locks_are_released_when_nobody_holds_or_awaits_them() -> None:
    store = MemorySessionStore(max_sessions=10)
    async with store.lock("a"):
        assert len(store._locks) == 1
    assert len(store._locks) == 0


async def test_a_full_store_sweeps_before_refusing() -> None:
    clock = [0.0]
    store = MemorySessionStore(max_sessions=1, clock=lambda: clock[0])
    try:
        await store.create(record("a", 1.0, clock[0]))
        clock[0] += 2.0  # expired, but the background sweep has not run yet
        await store.create(record("b", 1.0, clock[0]))
        assert await store.count() == 1
    finally:
        await store.aclose()
