"""The session store seam: what the data plane needs from any store (memory now, Redis for replicas).

A session is a stateful stream of one model: its recurrent states, its step counter and what is needed to answer
a safe retry. Records are immutable values; a step produces a new record and `commit` installs it atomically,
compare-and-set on `version` (which every commit increments, so a reset to step 0 cannot be confused with an
older step 0). Nothing else mutates a session, so a failed request changes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import NamedTuple, Protocol

import numpy as np

from rnnserve.errors import TooManySessions


class SessionRecord(NamedTuple):
    """An immutable value (a NamedTuple: built twice per step, and much cheaper to build than a frozen dataclass;
    bench/README.md has the figures)."""

    session_id: str
    model: str
    batch_size: int
    states: tuple[np.ndarray, ...]  # float32 (batch, units) each, in the model signature's state order
    ttl_s: float
    expires_at: float  # unix time
    created_at: float  # unix time
    step: int = 0  # timesteps consumed since creation or the last reset
    version: int = 0  # incremented by every commit; the CAS token
    # Safe retries: the step the last request started from, a digest of its body, and its encoded response.
    prev_step: int | None = None
    last_digest: bytes | None = None
    last_response: bytes | None = None
    owner: str | None = None  # the tenant that created the session (None on a server without keys)

    def advanced(
        self,
        states: tuple[np.ndarray, ...],
        timesteps: int,
        digest: bytes | None,
        response: bytes | None,
        now: float | None = None,
    ) -> SessionRecord:
        """The record after a successful step of `timesteps` timesteps, at `now` (unix time; default: the clock)."""
        return SessionRecord(
            self.session_id,
            self.model,
            self.batch_size,
            states,
            self.ttl_s,
            (time.time() if now is None else now) + self.ttl_s,
            self.created_at,
            self.step + timesteps,
            self.version + 1,
            self.step,
            digest,
            response,
            self.owner,
        )

    def reset(self, states: tuple[np.ndarray, ...], now: float | None = None) -> SessionRecord:
        return self._replace(
            states=states,
            step=0,
            version=self.version + 1,
            prev_step=None,
            last_digest=None,
            last_response=None,
            expires_at=(time.time() if now is None else now) + self.ttl_s,
        )


class SessionSummary(NamedTuple):
    """What a listing shows of one live session (never its states)."""

    session_id: str
    model: str
    step: int
    expires_at: float  # unix time
    created_at: float  # unix time
    batch_size: int
    owner: str | None = None  # the tenant that created the session


class SessionPage(NamedTuple):
    """One page of a listing, in session id order; `next_cursor` (the last id shown) is None after the last page."""

    sessions: list[SessionSummary]
    next_cursor: str | None


def owned_by(record: object, owner: str | None) -> bool:
    """Whether a listing for `owner` shows `record` (None: every owner). Records carry an `owner` once tenants
    exist; until then a record has none and only an unfiltered listing shows it."""
    return owner is None or getattr(record, "owner", None) == owner


def summary(record: SessionRecord) -> SessionSummary:
    return SessionSummary(
        record.session_id,
        record.model,
        record.step,
        record.expires_at,
        record.created_at,
        record.batch_size,
        record.owner,
    )


class SessionStore(Protocol):
    """Errors: `SessionNotFound` for an unknown or expired id, `TooManySessions` when full,
    `SeqConflict` when a commit's expected version is stale, `StoreUnavailable` when the backend is down."""

    async def create(self, record: SessionRecord) -> None:
        """Add a new session; `TooManySessions` when the store holds its maximum of sessions, or when the new one's
        states would take the store's state bytes past its budget (`max_state_bytes`, see `over_budget`). Both
        checks are atomic with the create, and cost the same however many sessions the store holds."""
        ...

    async def get(self, session_id: str) -> SessionRecord:
        """The live record as the store holds it now, its TTL renewed (a use keeps a session alive)."""
        ...

    async def load(self, session_id: str) -> tuple[SessionRecord, bool]:
        """The record to step from, and whether it was read from the store now (True) or is this process's copy of
        what it last read or committed (False: another replica may have moved on since, so a commit against it can
        fail `SeqConflict` although no request overlapped; the caller then `get`s and recomputes). A store that
        reads every time (memory) always answers True; a copy is used only while its TTL runs."""
        ...

    async def commit(self, record: SessionRecord, expected_version: int) -> None:
        """Install `record` iff the stored version is still `expected_version` (atomic across replicas)."""
        ...

    async def delete(self, session_id: str) -> bool: ...

    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Serialise requests on one session in this process, in arrival order (FIFO)."""
        ...

    async def count(self) -> int: ...

    async def usage(self, owner: str) -> tuple[int, int]:
        """(live sessions, bytes of their states) of one owner (a tenant's quota is checked against it), from the
        store's counters: its cost does not grow with the sessions of other owners on a shared store."""
        ...

    async def scan(
        self, *, after: str | None = None, limit: int = 100, model: str | None = None, owner: str | None = None
    ) -> SessionPage:
        """Live sessions with ids greater than `after`, in id order, at most `limit` (>= 1), only those of `model`
        and `owner` when given. Reading them renews no TTL."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class SessionEvents(Protocol):
    """Optional observer (metrics) a store reports to."""

    def expired(self, n: int = 1) -> None: ...

    def evicted(self, n: int = 1) -> None: ...

    def store_round_trip(self, op: str) -> None:
        """One exchange with a remote store (one command, or one pipeline of script calls) for `op`."""
        ...


def state_bytes(states: Sequence[np.ndarray]) -> int:
    """The bytes a session's states take as stores keep them (float32): what budgets and quotas count."""
    return sum(4 * math.prod(s.shape) for s in states)


def over_budget(held: int, wanted: int, limit: int, *, buckets: int = 1) -> TooManySessions:
    """The refusal of a session whose states would take the store past `max_state_bytes`: `held` bytes held,
    `wanted` with the new session's, `limit` the budget (of one bucket, when the store counts per bucket)."""
    where = "the server's sessions hold" if buckets == 1 else f"the sessions of this id's bucket (of {buckets}) hold"
    return TooManySessions(
        f"{where} {held} bytes of state; this session's would bring them to {wanted}, past the limit "
        f"(max_state_bytes) of {limit}: delete sessions or wait for idle ones to expire",
        limit=limit,
        needed=wanted,
        setting="max_state_bytes",
    )
