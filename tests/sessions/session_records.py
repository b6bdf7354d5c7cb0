"""Builders and checks shared by the session store tests."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from rnnserve.sessions.base import SessionRecord


@dataclass
class RecordingEvents:
    expired_n: int = 0
    evicted_n: int = 0
    round_trips: dict[str, int] = field(default_factory=dict)

    def expired(self, n: int = 1) -> None:
        self.expired_n += n

    def evicted(self, n: int = 1) -> None:
        self.evicted_n += n

    def store_round_trip(self, op: str) -> None:
        self.round_trips[op] = self.round_trips.get(op, 0) + 1


def make_record(
    session_id: str | None = None,
    *,
    units: tuple[int, ...] = (128,),
    batch_size: int = 1,
    ttl_s: float = 60.0,
    model: str = "demo",
    seed: int = 0,
) -> SessionRecord:
    """A fresh record with one random float32 (batch, units) state per entry of `units`."""
    rng = np.random.default_rng(seed)
    states = tuple(rng.standard_normal((batch_size, u)).astype(np.float32) for u in units)
    return SessionRecord(
        session_id=session_id or secrets.token_urlsafe(16),
        model=model,
        batch_size=batch_size,
        states=states,
        ttl_s=ttl_s,
        expires_at=time.time() + ttl_s,
        created_at=time.time(),
    )


def states_equal(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True))
