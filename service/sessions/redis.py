"""Sessions in Redis, so that many replicas share one truth and a replica's crash loses nothing.

Layout (every name under `key_prefix`):

* `s:<id>`: one hash per session, always written whole by one Lua script (never half a session): model,
  batch_size, ttl_ms, expires_ms, step, version, prev_step, digest, response, created_at, token, and the states
  as raw float32 bytes (`service.sessions.codec`). Redis expires it (PEXPIRE); every use renews it.
* `live`: a sorted set of live ids scored by their expiry time, which makes the session cap one atomic check.

Every time in the scripts is Redis's own clock (`TIME`), so replicas with skewed clocks agree on expiry.
`commit` is a compare-and-set on `version` inside one script: two replicas stepping one session can never both
commit. A commit also stores a random token, so a commit that redis-py re-sends after a dropped connection is
recognised as already applied rather than reported as a conflict.

Redis being unreachable (refused, timed out, loading its AOF, read-only) surfaces as `StoreUnavailable` (503);
the client reconnects by itself on the next call once Redis answers again.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from service.errors import SeqConflict, SessionNotFound, StoreUnavailable, TooManySessions
from service.sessions.base import SessionEvents, SessionRecord
from service.sessions.codec import decode_states, encode_states
from service.sessions.locks import SessionLocks

T = TypeVar("T")

SOCKET_TIMEOUT_S = 1.5
RETRIES = 2  # reconnect attempts per call before answering 503
MAX_CONNECTIONS = 64  # per process; more concurrent calls wait for a free connection ...
POOL_WAIT_S = 5.0  # ... this long at most, then 503

# Errors that mean "Redis cannot serve us now", as opposed to a bug in a command.
_UNAVAILABLE = (
    redis_errors.ConnectionError,  # includes BusyLoadingError (loading the AOF after a restart)
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
)

# Shared prologue: the current time in ms on Redis's clock.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: session, live.  ARGV: id, max_sessions, ttl_ms, field, value, ...
# -> {0, expired} | {-1, expired} exists | {-2, expired} full
_CREATE = (
    _NOW
    + """
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, expired} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return {-2, expired} end
local exp = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'expires_ms', exp, unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], exp, ARGV[1])
return {0, expired}
"""
)

# KEYS: session, live.  ARGV: id.
# -> {0, {field, value, ...}} | {-1} unknown | {-3} evicted by Redis before its time | {-4} expired
_GET = (
    _NOW
    + """
local ttl = redis.call('HGET', KEYS[1], 'ttl_ms')
if not ttl then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not score then return {-1} end
  redis.call('ZREM', KEYS[2], ARGV[1])
  if tonumber(score) > now then return {-3} end
  return {-4}
end
local exp = now + tonumber(ttl)
redis.call('HSET', KEYS[1], 'expires_ms', exp)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], exp, ARGV[1])
return {0, redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: session, live.  ARGV: id, expected_version, new_version, token, ttl_ms, field, value, ... (incl. version)
# -> {0} committed (or this very commit was already applied) | {-1} unknown | {-2, version, step} stale
_COMMIT = (
    _NOW
    + """
local cur = redis.call('HGET', KEYS[1], 'version')
if not cur then return {-1} end
if cur ~= ARGV[2] then
  if cur == ARGV[3] and redis.call('HGET', KEYS[1], 'token') == ARGV[4] then return {0} end
  return {-2, cur, redis.call('HGET', KEYS[1], 'step')}
end
local exp = now + tonumber(ARGV[5])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', ARGV[4], 'expires_ms', exp, unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], exp, ARGV[1])
return {0}
"""
)

# KEYS: session, live.  ARGV: id.  -> number of keys deleted
_DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""

# KEYS: live.  -> {live count, expired}
_COUNT = (
    _NOW
    + """
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return {redis.call('ZCARD', KEYS[1]), expired}
"""
)


class RedisSessionStore:
    """`SessionStore` over Redis (redis-py asyncio). Build it with `from_url`; close it with `aclose`."""

    def __init__(
        self,
        client: Redis,
        *,
        max_sessions: int,
        default_ttl_s: float,
        events: SessionEvents | None = None,
        key_prefix: str = "rnnserve:",
        where: str = "redis",
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        if default_ttl_s <= 0:
            raise ValueError(f"default_ttl_s must be > 0, got {default_ttl_s}")
        self._client = client
        self._max_sessions = max_sessions
        self._default_ttl_s = default_ttl_s
        self._events = events
        self._prefix = key_prefix
        self._live_key = f"{key_prefix}live"
        self._where = where
        self._locks = SessionLocks()
        self._create = client.register_script(_CREATE)
        self._get = client.register_script(_GET)
        self._commit = client.register_script(_COMMIT)
        self._delete = client.register_script(_DELETE)
        self._count = client.register_script(_COUNT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_sessions: int,
        default_ttl_s: float,
        events: SessionEvents | None = None,
        key_prefix: str = "rnnserve:",
    ) -> RedisSessionStore:
        """A store on `redis://[user:password@]host:port/db` (or rediss://, unix://): short timeouts, a few quick
        reconnects, and a bounded pool of connections."""
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES),
            health_check_interval=30,
        )
        client = Redis.from_pool(pool)
        return cls(
            client,
            max_sessions=max_sessions,
            default_ttl_s=default_ttl_s,
            events=events,
            key_prefix=key_prefix,
            where=_describe(url),
        )

    # ---- SessionStore -----------------------------------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        ttl_ms = self._ttl_ms(record)
        status, expired = await self._run(
            self._create(
                keys=self._keys(record.session_id),
                args=[record.session_id, self._max_sessions, ttl_ms, *self._fields(record, ttl_ms)],
            )
        )
        self._report_expired(int(expired))
        if status == -1:
            raise ValueError(f"session id {record.session_id!r} already exists")
        if status == -2:
            raise TooManySessions(f"the session store holds its maximum of {self._max_sessions} live sessions")

    async def get(self, session_id: str) -> SessionRecord:
        reply = await self._run(self._get(keys=self._keys(session_id), args=[session_id]))
        status = int(reply[0])
        if status == -3 and self._events is not None:
            self._events.evicted()
        elif status == -4:
            self._report_expired(1)
        if status != 0:
            raise SessionNotFound(f"no session {session_id!r} (never created, deleted or expired)")
        flat: list[bytes] = reply[1]
        return _record_from_hash(session_id, dict(zip(flat[::2], flat[1::2], strict=True)))

    async def commit(self, record: SessionRecord, expected_version: int) -> None:
        ttl_ms = self._ttl_ms(record)
        token = secrets.token_hex(8)
        reply = await self._run(
            self._commit(
                keys=self._keys(record.session_id),
                args=[
                    record.session_id,
                    expected_version,
                    record.version,
                    token,
                    ttl_ms,
                    *self._fields(record, ttl_ms),
                ],
            )
        )
        status = int(reply[0])
        if status == -1:
            raise SessionNotFound(f"no session {record.session_id!r} (never created, deleted or expired)")
        if status == -2:
            version, step = int(reply[1]), int(reply[2])
            raise SeqConflict(
                f"session {record.session_id!r} changed while this request ran (now at step {step})",
                step=step,
                version=version,
            )

    async def delete(self, session_id: str) -> bool:
        deleted = await self._run(self._delete(keys=self._keys(session_id), args=[session_id]))
        return bool(deleted)

    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(session_id)

    async def count(self) -> int:
        live, expired = await self._run(self._count(keys=[self._live_key]))
        self._report_expired(int(expired))
        return int(live)

    async def ping(self) -> None:
        await self._run(self._client.ping())

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- internals --------------------------------------------------------------------------------------------

    def _keys(self, session_id: str) -> list[str]:
        return [f"{self._prefix}s:{session_id}", self._live_key]

    def _ttl_ms(self, record: SessionRecord) -> int:
        ttl_s = record.ttl_s if record.ttl_s > 0 else self._default_ttl_s
        return max(1, round(ttl_s * 1000))

    @staticmethod
    def _fields(record: SessionRecord, ttl_ms: int) -> list[Any]:
        """The hash fields of a record, flattened; the scripts add `token` and `expires_ms` themselves."""
        fields: dict[str, Any] = {
            "model": record.model,
            "batch_size": record.batch_size,
            "ttl_ms": ttl_ms,
            "step": record.step,
            "version": record.version,
            "created_at": repr(record.created_at),
            "states": encode_states(record.states),
        }
        if record.prev_step is not None:
            fields["prev_step"] = record.prev_step
        if record.last_digest is not None:
            fields["digest"] = record.last_digest
        if record.last_response is not None:
            fields["response"] = record.last_response
        return [item for pair in fields.items() for item in pair]

    def _report_expired(self, n: int) -> None:
        if n and self._events is not None:
            self._events.expired(n)

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"session store {self._where} unavailable: {exc}") from exc


def _describe(url: str) -> str:
    """Where a store URL points, for error messages: never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{parts.hostname}:{parts.port or 6379}{parts.path}"


def _record_from_hash(session_id: str, h: dict[bytes, bytes]) -> SessionRecord:
    def optional_int(name: bytes) -> int | None:
        return int(h[name]) if name in h else None

    return SessionRecord(
        session_id=session_id,
        model=h[b"model"].decode(),
        batch_size=int(h[b"batch_size"]),
        states=decode_states(h[b"states"]),
        ttl_s=int(h[b"ttl_ms"]) / 1000,
        expires_at=int(h[b"expires_ms"]) / 1000,
        step=int(h[b"step"]),
        version=int(h[b"version"]),
        prev_step=optional_int(b"prev_step"),
        last_digest=h.get(b"digest"),
        last_response=h.get(b"response"),
        created_at=float(h[b"created_at"]),
    )
