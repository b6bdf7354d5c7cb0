"""Sessions in Redis or a Redis Cluster, so that many replicas share one truth and a replica's crash loses nothing.

Layout (every name under `key_prefix`):

* `s:<id>`: one string per session, the whole record as `rnnserve.sessions.codec.encode_record` packs it (raw
  float32 states, no field names). Redis expires it (PX); every use renews it.
* `live`: a sorted set of live ids scored by their expiry time, which makes the session cap one atomic check.
* `sizes` (a hash: id -> bytes of its states, and its owner when it has one) and `held` (their sum): the state byte
  budget (`max_state_bytes`), also one atomic check; `tenants` (a hash: `n:<owner>` -> sessions, `b:<owner>` ->
  bytes), what a tenant's quota is checked against (`usage`). A session's size and owner are fixed when it is
  created; the scripts that drop ids from `live` (expired, deleted, evicted) give its bytes and count back, so no
  create ever lists the sessions.

On a Redis Cluster the keys are spread over `buckets` hash tags: `<prefix>{<b>}s:<id>`, `<prefix>{<b>}live`, ...,
with b = crc32(id) mod buckets, so a session's key and its bucket's `live`, `sizes`, `held` and `tenants` share one
slot and every script touches one slot only. The cap and the byte budget are then enforced per bucket
(ceil(max / buckets) each; see `BucketCap`); a tenant's usage is the sum of the buckets' counters.

Speed: a step costs one Redis round trip for a whole batch of sessions, not two per session.

* **Per batch.** Calls of one kind (load or commit) issued in one event-loop iteration are sent together, as one
  script call per key group (one on a single Redis, one per bucket on a cluster, pipelined). The dynamic batcher
  resolves a model call's steps in one iteration, so their commits leave together.
* **No read before a step.** The store keeps the records it served last (`load`): a step computes from that
  record and commits with a compare-and-set against its version *and* tag, so the commit succeeds only if nobody
  else wrote the session since. When another replica moved it, the commit fails and the data plane re-reads and
  recomputes (`InferenceService.step`). The TTL is renewed by the commit itself.

Every commit stays a compare-and-set inside one script: two replicas stepping one session can never both commit.
A commit that redis-py re-sends after a dropped connection finds its own version and tag already stored and is
recognised as applied. Every time in the scripts is Redis's own clock (`TIME`).

Redis being unreachable (refused, timed out, loading its AOF, read-only, cluster down) surfaces as
`StoreUnavailable` (503); the client reconnects by itself on the next call once Redis answers again.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from rnnserve.errors import SeqConflict, SessionNotFound, StoreUnavailable, TooManySessions
from rnnserve.sessions.base import (
    SessionEvents,
    SessionPage,
    SessionRecord,
    SessionSummary,
    over_budget,
    owned_by,
    state_bytes,
)
from rnnserve.sessions.codec import (
    HEAD_BYTES,
    decode_head,
    decode_listing,
    decode_record,
    encode_record,
    version_head,
)
from rnnserve.sessions.locks import SessionLocks

T = TypeVar("T")

SOCKET_TIMEOUT_S = 0.4  # an unreachable Redis answers 503 within about a second (issue 12): 0.4 s, a quick
RETRIES = 1  # reconnect with a 50 ms backoff, 0.4 s again; a healthy Redis answers a pipelined batch in milliseconds
MAX_CONNECTIONS = 64  # per process; more concurrent calls wait for a free connection ...
POOL_WAIT_S = 5.0  # ... this long at most, then 503
CACHE_BYTES = 64 * 2**20  # memory for the records kept for `load` (the sessions this replica served last)
_ENTRY_BYTES = 240  # what one cached record costs besides its states (the record, its head, the dict entry)
CLUSTER_BUCKETS = 16  # hash tags on a cluster (the `buckets` query parameter overrides it)

# Errors that mean "Redis cannot serve us now", as opposed to a bug in a command.
_UNAVAILABLE = (
    redis_errors.ConnectionError,  # includes BusyLoadingError (loading the AOF after a restart)
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.ClusterError,  # includes ClusterDownError, MasterDownError
    redis_errors.TryAgainError,
    redis_errors.RedisClusterException,  # no node reachable, slot not covered
)

# Shared prologue: the current time in ms on Redis's clock, and a record's ttl_ms (u64 at byte 16 of its value).
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ttl_of(v)
  local b1, b2, b3, b4, b5, b6, b7 = string.byte(v, 17, 23)
  return b1 + b2 * 256 + b3 * 65536 + b4 * 16777216 + b5 * 4294967296 + b6 * 1099511627776 + b7 * 281474976710656
end
"""

# The accounting (KEYS[1] live, KEYS[2] sizes, KEYS[3] held, KEYS[4] tenants): a `sizes` entry is the session's
# bytes, then its owner after a NUL when it has one. `forget` gives back one id's bytes and count, `prune` drops every
# expired id from `live` and gives back theirs (in slices: Lua's unpack takes a few thousand values).
_SIZES = """
local function give_back(freed, owners)
  if freed > 0 then redis.call('DECRBY', KEYS[3], freed) end
  for owner, t in pairs(owners) do
    if redis.call('HINCRBY', KEYS[4], 'n:' .. owner, -t[1]) <= 0 then
      redis.call('HDEL', KEYS[4], 'n:' .. owner, 'b:' .. owner)
    else
      redis.call('HINCRBY', KEYS[4], 'b:' .. owner, -t[2])
    end
  end
end
local function count_in(entry, owners)
  local nul = string.find(entry, '\0', 1, true)
  if not nul then return tonumber(entry) end
  local n, owner = tonumber(string.sub(entry, 1, nul - 1)), string.sub(entry, nul + 1)
  local t = owners[owner]
  if not t then t = {0, 0}; owners[owner] = t end
  t[1], t[2] = t[1] + 1, t[2] + n
  return n
end
local function forget(id)
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    local owners = {}
    local n = count_in(entry, owners)
    redis.call('HDEL', KEYS[2], id)
    give_back(n, owners)
  end
end
local function prune()
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  if #gone == 0 then return 0 end
  local freed, owners = 0, {}
  for i = 1, #gone, 1000 do
    local part = {unpack(gone, i, math.min(i + 999, #gone))}
    for _, entry in ipairs(redis.call('HMGET', KEYS[2], unpack(part))) do
      if entry then freed = freed + count_in(entry, owners) end
    end
    redis.call('HDEL', KEYS[2], unpack(part))
  end
  give_back(freed, owners)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  return #gone
end
"""

# KEYS: live, sizes, held, tenants, session.  ARGV: id, max_sessions (for this live set), value, bytes of its states,
# the byte budget of this bucket (0: none), owner ('' for none).
# -> {0, expired, held} created (or this very create was already applied) | {-1, expired, held} exists
# | {-2, expired, held} full | {-3, expired, held} past the byte budget; held: the bucket's bytes before this create
_CREATE = (
    _PROLOGUE
    + _SIZES
    + """
local expired = prune()
local held = tonumber(redis.call('GET', KEYS[3]) or '0')
local head = redis.call('GETRANGE', KEYS[5], 0, 15)
if head ~= '' then
  if head == string.sub(ARGV[3], 1, 16) then return {0, expired, held} end
  return {-1, expired, held}
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {-2, expired, held} end
local size = tonumber(ARGV[4])
if tonumber(ARGV[5]) > 0 and held + size > tonumber(ARGV[5]) then return {-3, expired, held} end
local ttl = ttl_of(ARGV[3])
redis.call('SET', KEYS[5], ARGV[3], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('INCRBY', KEYS[3], size)
if ARGV[6] == '' then
  redis.call('HSET', KEYS[2], ARGV[1], size)
else
  redis.call('HSET', KEYS[2], ARGV[1], size .. '\0' .. ARGV[6])
  redis.call('HINCRBY', KEYS[4], 'n:' .. ARGV[6], 1)
  redis.call('HINCRBY', KEYS[4], 'b:' .. ARGV[6], size)
end
return {0, expired, held}
"""
)

# KEYS: live, sizes, held, tenants, session_1 .. session_n (one bucket: one slot).  ARGV: id_1 .. id_n.
# -> {now_ms, r_1 .. r_n}, r = the value (its TTL renewed) | -1 unknown | -3 evicted before its time | -4 expired
_LOAD = (
    _PROLOGUE
    + _SIZES
    + """
local out = {now}
for i = 5, #KEYS do
  local id = ARGV[i - 4]
  local v = redis.call('GET', KEYS[i])
  if v then
    local ttl = ttl_of(v)
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('ZADD', KEYS[1], now + ttl, id)
    out[i - 3] = v
  else
    local score = redis.call('ZSCORE', KEYS[1], id)
    if not score then
      out[i - 3] = -1
    else
      redis.call('ZREM', KEYS[1], id)
      forget(id)
      if tonumber(score) > now then out[i - 3] = -3 else out[i - 3] = -4 end
    end
  end
end
return out
"""
)

# KEYS: live, sizes, held, tenants, session_1 .. session_n.  ARGV: (id, expected head, value) per session.
# -> {r_1 .. r_n}, r = 0 committed (or this very commit was already applied) | -1 unknown | the current value's
# first 32 bytes (version, tag, ttl, step) when it does not start with the expected head (a stale compare-and-set)
_COMMIT = (
    _PROLOGUE
    + """
local out = {}
for i = 5, #KEYS do
  local a = (i - 5) * 3
  local expected, value = ARGV[a + 2], ARGV[a + 3]
  local cur = redis.call('GETRANGE', KEYS[i], 0, 31)
  if cur == '' then
    out[i - 4] = -1
  elseif string.sub(cur, 1, #expected) ~= expected then
    if string.sub(cur, 1, 16) == string.sub(value, 1, 16) then out[i - 4] = 0 else out[i - 4] = cur end
  else
    local ttl = ttl_of(value)
    redis.call('SET', KEYS[i], value, 'PX', ttl)
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[a + 1])
    out[i - 4] = 0
  end
end
return out
"""
)

# KEYS: live, sizes, held, tenants, session.  ARGV: id.  -> number of keys deleted
_DELETE = (
    _PROLOGUE
    + _SIZES
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
forget(ARGV[1])
return redis.call('DEL', KEYS[5])
"""
)

# KEYS: live, sizes, held, tenants.  -> {live count, expired}
_COUNT = (
    _PROLOGUE
    + _SIZES
    + """
local expired = prune()
return {redis.call('ZCARD', KEYS[1]), expired}
"""
)

# KEYS: live, sizes, held, tenants.  ARGV: owner.  -> {expired, the owner's live sessions, their bytes}
_USAGE = (
    _PROLOGUE
    + _SIZES
    + """
local expired = prune()
local n = redis.call('HGET', KEYS[4], 'n:' .. ARGV[1]) or '0'
local b = redis.call('HGET', KEYS[4], 'b:' .. ARGV[1]) or '0'
return {expired, tonumber(n), tonumber(b)}
"""
)

# KEYS: live.  ARGV: the session key prefix, after ('' for none), want, model ('' for any), owner ('' for any).
# -> {candidates, id_1, expiry_ms_1, header+name field_1, ...}: the live sessions with ids > after, in id order, of
# the model and owner, at most `want` (read with GETRANGE: no TTL renewed, no states), and how many ids were > after
# at all. The name field is the model name, then the owner's after a NUL when the session has one (codec.name_field).
# The session keys share the live set's slot (one hash tag), so a cluster runs it on one node.
_LIST = (
    _PROLOGUE
    + """
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
local picked = {}
for i = 1, #live, 2 do
  if ARGV[2] == '' or live[i] > ARGV[2] then picked[#picked + 1] = {live[i], live[i + 1]} end
end
table.sort(picked, function(a, b) return a[1] < b[1] end)
local out = {#picked}
local want = tonumber(ARGV[3])
for i = 1, #picked do
  if (#out - 1) / 3 >= want then break end
  local key = ARGV[1] .. picked[i][1]
  local h = redis.call('GETRANGE', key, 0, 59)
  if #h == 60 then
    local n = string.byte(h, 53) + string.byte(h, 54) * 256
    local name = redis.call('GETRANGE', key, 60, 59 + n)
    local model, owner = name, ''
    local nul = string.find(name, '\0', 1, true)
    if nul then model, owner = string.sub(name, 1, nul - 1), string.sub(name, nul + 1) end
    if (ARGV[4] == '' or model == ARGV[4]) and (ARGV[5] == '' or owner == ARGV[5]) then
      out[#out + 1] = picked[i][1]
      out[#out + 1] = picked[i][2]
      out[#out + 1] = h .. name
    end
  end
end
return out
"""
)


class _Call(NamedTuple):
    """One session's part of a batched script call."""

    group: int  # key group (bucket)
    session_key: str
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


class _Queue:
    """Calls of one script that arrived in the current event-loop iteration; sent together at its end."""

    __slots__ = ("script", "name", "calls")

    def __init__(self, script: str, name: str) -> None:
        self.script, self.name = script, name
        self.calls: list[_Call] = []


class RedisSessionStore:
    """`SessionStore` over Redis or a Redis Cluster (redis-py asyncio, hiredis). Build it with `from_url`."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        max_sessions: int,
        max_state_bytes: int | None = None,
        default_ttl_s: float,
        events: SessionEvents | None = None,
        key_prefix: str = "rnnserve:",
        where: str = "redis",
        buckets: int = 0,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        """`buckets` 0: one Redis, plain keys; N >= 1: keys under N hash tags (a cluster needs them).
        `max_state_bytes`: the most bytes every session's states may take together (None: no budget), counted per
        bucket as the cap is. `cache_bytes`: memory for the copies `load` steps from (0: read on every step)."""
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        if default_ttl_s <= 0:
            raise ValueError(f"default_ttl_s must be > 0, got {default_ttl_s}")
        if buckets < 0 or cache_bytes < 0:
            raise ValueError(f"buckets and cache_bytes must be >= 0, got {buckets}, {cache_bytes}")
        self._client = client
        self._max_sessions = max_sessions
        self._default_ttl_s = default_ttl_s
        self._events = events
        self._where = where
        self._buckets = buckets
        self._cap = BucketCap(max_sessions, max(buckets, 1))
        self._max_state_bytes = max_state_bytes
        self._byte_budget = 0 if max_state_bytes is None else BucketCap(max_state_bytes, max(buckets, 1)).per_bucket
        tags = [f"{key_prefix}{{{b}}}" for b in range(buckets)] if buckets else [key_prefix]
        self._session_prefixes = [f"{tag}s:" for tag in tags]
        # each bucket's live set, sizes and held bytes: the first keys of every script call on it
        self._bucket_keys = [[f"{tag}live", f"{tag}sizes", f"{tag}held", f"{tag}tenants"] for tag in tags]
        self._locks = SessionLocks()
        # id -> (record, head, bytes): least recently used first, at most `cache_bytes` in all
        self._cache: OrderedDict[str, tuple[SessionRecord, bytes, int]] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._load_queue = _Queue(_LOAD, "load")
        self._commit_queue = _Queue(_COMMIT, "commit")
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_sessions: int,
        max_state_bytes: int | None = None,
        default_ttl_s: float,
        events: SessionEvents | None = None,
        key_prefix: str = "rnnserve:",
        cache_bytes: int = CACHE_BYTES,
    ) -> RedisSessionStore:
        """A store on `redis://[user:password@]host:port/db` (or rediss://, unix://), or on a Redis Cluster with
        `redis+cluster://[user:password@]host:port,host:port/?buckets=16` (or rediss+cluster:// for TLS): short
        timeouts, a few quick reconnects, and a bounded pool of connections."""
        common: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": SOCKET_TIMEOUT_S}
        client: Redis | RedisCluster
        if is_cluster_url(url):
            nodes, options, buckets = _parse_cluster_url(url)
            client = RedisCluster(
                startup_nodes=nodes,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES),
                max_connections=MAX_CONNECTIONS,
                **options,
                **common,
            )
        else:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=POOL_WAIT_S,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES),
                health_check_interval=30,
                **common,
            )
            client, buckets = Redis.from_pool(pool), 0
        return cls(
            client,
            max_sessions=max_sessions,
            max_state_bytes=max_state_bytes,
            default_ttl_s=default_ttl_s,
            events=events,
            key_prefix=key_prefix,
            where=describe_url(url),
            buckets=buckets,
            cache_bytes=cache_bytes,
        )

    # ---- SessionStore -----------------------------------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        group, key = self._key(record.session_id)
        value, head = self._encode(record)
        size = state_bytes(record.states)
        status, expired, held = await self._run_one(
            _CREATE,
            [*self._bucket_keys[group], key],
            [record.session_id, self._cap.per_bucket, value, size, self._byte_budget, record.owner or ""],
            "create",
        )
        self._report_expired(int(expired))
        if status == -1:
            raise ValueError(f"session id {record.session_id!r} already exists")
        if status == -2:
            raise TooManySessions(f"the session store holds its maximum of {self._max_sessions} live sessions")
        if status == -3:
            raise over_budget(int(held), int(held) + size, self._byte_budget, buckets=self._cap.buckets)
        self._remember(record, head)

    async def get(self, session_id: str) -> SessionRecord:
        group, key = self._key(session_id)
        reply, now_ms = await self._enqueue(self._load_queue, group, key, (session_id,))
        if isinstance(reply, int):
            self._forget(session_id)
            if reply == -3 and self._events is not None:
                self._events.evicted()
            elif reply == -4:
                self._report_expired(1)
            raise SessionNotFound(f"no session {session_id!r} (never created, deleted or expired)")
        fields = decode_record(reply)
        record = SessionRecord(
            session_id,
            fields.model,
            fields.batch_size,
            fields.states,
            fields.ttl_ms / 1000,
            (now_ms + fields.ttl_ms) / 1000,
            fields.created_at,
            fields.step,
            fields.version,
            fields.prev_step,
            fields.digest,
            fields.response,
            fields.owner,
        )
        self._remember(record, fields.head)
        return record

    async def load(self, session_id: str) -> tuple[SessionRecord, bool]:
        entry = self._cache.get(session_id)
        if entry is not None and entry[0].expires_at > time.time():
            self._cache.move_to_end(session_id)
            return entry[0], False
        return await self.get(session_id), True

    async def commit(self, record: SessionRecord, expected_version: int) -> None:
        session_id = record.session_id
        entry = self._cache.get(session_id)
        # Against the record this process read or wrote last: its version and tag, so that a session deleted and
        # re-created at the same version elsewhere never matches. Otherwise the version alone.
        expected = (
            entry[1] if entry is not None and entry[0].version == expected_version else version_head(expected_version)
        )
        value, head = self._encode(record)
        group, key = self._key(session_id)
        reply = await self._enqueue(self._commit_queue, group, key, (session_id, expected, value))
        if reply == 0:
            self._remember(record, head)
            return
        self._forget(session_id)
        if reply == -1:
            raise SessionNotFound(f"no session {session_id!r} (never created, deleted or expired)")
        version, step = decode_head(reply)
        raise SeqConflict(
            f"session {session_id!r} changed while this request ran (now at step {step})", step=step, version=version
        )

    async def delete(self, session_id: str) -> bool:
        self._forget(session_id)
        group, key = self._key(session_id)
        deleted = await self._run_one(_DELETE, [*self._bucket_keys[group], key], [session_id], "delete")
        return bool(deleted)

    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(session_id)

    async def count(self) -> int:
        replies = await self._run_groups(_COUNT, [(list(keys), []) for keys in self._bucket_keys], "count")
        live = expired = 0
        for reply in replies:
            live += int(reply[0])
            expired += int(reply[1])
        self._report_expired(expired)
        return live

    async def usage(self, owner: str) -> tuple[int, int]:
        """One script call per bucket (pipelined), each answering its counters: no session is read."""
        replies = await self._run_groups(_USAGE, [(list(keys), [owner]) for keys in self._bucket_keys], "usage")
        sessions = held = expired = 0
        for reply in replies:
            expired += int(reply[0])
            sessions += int(reply[1])
            held += int(reply[2])
        self._report_expired(expired)
        return sessions, held

    async def scan(
        self, *, after: str | None = None, limit: int = 100, model: str | None = None, owner: str | None = None
    ) -> SessionPage:
        """One script call per bucket (pipelined), each answering its smallest ids after the cursor; merged here."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        groups = [
            ([keys[0]], [prefix, after or "", limit + 1, model or "", owner or ""])
            for keys, prefix in zip(self._bucket_keys, self._session_prefixes, strict=True)
        ]
        replies = await self._run_groups(_LIST, groups, "list")
        found: list[SessionSummary] = []
        for reply in replies:
            for i in range(1, len(reply), 3):
                session_id = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
                step, created_at, batch_size, name, owner_of = decode_listing(reply[i + 2])
                expires_at = float(reply[i + 1]) / 1000
                found.append(SessionSummary(session_id, name, step, expires_at, created_at, batch_size, owner_of))
        found = sorted((s for s in found if owned_by(s, owner)), key=lambda s: s.session_id)
        shown = found[:limit]
        return SessionPage(shown, shown[-1].session_id if len(found) > limit else None)

    async def ping(self) -> None:
        await self._run(self._client.ping())

    async def aclose(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        self._cache.clear()
        self._cached_bytes = 0
        await self._client.aclose()

    # ---- batching: one script call per key group for the calls of one loop iteration ------------------------------

    def _enqueue(self, queue: _Queue, group: int, key: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not queue.calls:
            loop.call_soon(self._flush, queue)
        queue.calls.append(_Call(group, key, args, future))
        return future

    def _flush(self, queue: _Queue) -> None:
        calls, queue.calls = queue.calls, []
        task = asyncio.get_running_loop().create_task(self._send(queue, calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, queue: _Queue, calls: list[_Call]) -> None:
        by_group: dict[int, list[_Call]] = {}
        for call in calls:
            by_group.setdefault(call.group, []).append(call)
        groups = list(by_group.values())
        scripts = []
        for members in groups:
            keys = list(self._bucket_keys[members[0].group])
            args: list[Any] = []
            for call in members:
                keys.append(call.session_key)
                args.extend(call.args)
            scripts.append((keys, args))
        try:
            replies = await self._run_groups(queue.script, scripts, queue.name)
        except BaseException as exc:
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        load = queue is self._load_queue
        for members, reply in zip(groups, replies, strict=True):
            if load:  # {now_ms, r_1 ..}: each gets (r_i, now_ms)
                now_ms = int(reply[0])
                for call, own in zip(members, reply[1:], strict=True):
                    if not call.future.done():
                        call.future.set_result((own, now_ms))
            else:
                for call, own in zip(members, reply, strict=True):
                    if not call.future.done():
                        call.future.set_result(own)

    # ---- Redis calls ------------------------------------------------------------------------------------------------

    async def _run_one(self, script: str, keys: list[str], args: list[Any], op: str) -> Any:
        return (await self._run_groups(script, [(keys, args)], op))[0]

    async def _run_groups(self, script: str, groups: Sequence[tuple[list[str], list[Any]]], op: str) -> list[Any]:
        """One script call per group: one command on one Redis, else pipelined (in parallel across a cluster's
        nodes). Each is one round trip for the store's metrics."""
        if self._events is not None:
            self._events.store_round_trip(op)
        if len(groups) == 1:
            keys, args = groups[0]
            return [await self._run(self._client.eval(script, len(keys), *keys, *args))]
        pipe = self._client.pipeline(transaction=False)
        for keys, args in groups:
            pipe.eval(script, len(keys), *keys, *args)
        replies = await self._run(pipe.execute(raise_on_error=False))
        for reply in replies:
            if isinstance(reply, _UNAVAILABLE):
                raise StoreUnavailable(f"session store {self._where} unavailable: {reply}") from reply
            if isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"session store {self._where} unavailable: {exc}") from exc

    # ---- the cap's buckets (see `BucketCap`) --------------------------------------------------------------------

    @property
    def buckets(self) -> int:
        return self._cap.buckets

    @property
    def most_sessions(self) -> int:
        """The most sessions the store may hold: max_sessions, rounded up to a multiple of the buckets."""
        return self._cap.most

    def bucket_of(self, session_id: str) -> int:
        return zlib.crc32(session_id.encode()) % self._buckets if self._buckets > 1 else 0

    # ---- internals --------------------------------------------------------------------------------------------

    def _key(self, session_id: str) -> tuple[int, str]:
        group = self.bucket_of(session_id)
        return group, self._session_prefixes[group] + session_id

    def _encode(self, record: SessionRecord) -> tuple[bytes, bytes]:
        """The stored value of `record` with a fresh tag, and its head (the compare-and-set token)."""
        ttl_s = record.ttl_s if record.ttl_s > 0 else self._default_ttl_s
        value = encode_record(
            version=record.version,
            tag=os.urandom(8),
            ttl_ms=max(1, round(ttl_s * 1000)),
            step=record.step,
            prev_step=record.prev_step,
            created_at=record.created_at,
            batch_size=record.batch_size,
            model=record.model,
            owner=record.owner,
            digest=record.last_digest,
            response=record.last_response,
            states=record.states,
        )
        return value, value[:HEAD_BYTES]

    def _remember(self, record: SessionRecord, head: bytes) -> None:
        """Keep `record` (as stored at `head`) for `load`. Without its cached reply: a retry that matches a copy is
        answered from a fresh read anyway (`InferenceService.step`), so the copy needs only the digest."""
        size = _ENTRY_BYTES + sum(s.nbytes for s in record.states)
        if size > self._cache_bytes:
            self._forget(record.session_id)
            return
        if record.last_response is not None:
            record = record._replace(last_response=None)
        cache = self._cache
        old = cache.pop(record.session_id, None)
        self._cached_bytes += size - (old[2] if old is not None else 0)
        cache[record.session_id] = (record, head, size)
        while self._cached_bytes > self._cache_bytes:
            self._cached_bytes -= cache.popitem(last=False)[1][2]

    def _forget(self, session_id: str) -> None:
        old = self._cache.pop(session_id, None)
        if old is not None:
            self._cached_bytes -= old[2]

    def _report_expired(self, n: int) -> None:
        if n and self._events is not None:
            self._events.expired(n)


class BucketCap:
    """The session cap over `buckets` independent live sets: each holds at most ceil(max_sessions / buckets).

    A script may touch one slot only, so no single script sees every bucket's count. A per-bucket cap keeps the
    check atomic (no create can overshoot it under concurrency), and bounds the total at
    `buckets * per_bucket` < max_sessions + buckets. The price: a create is refused when its own bucket is full,
    which, with ids spread evenly by crc32, starts a few standard deviations of a bucket's count below the total
    cap. One Redis uses one bucket, so there the cap is exact."""

    def __init__(self, max_sessions: int, buckets: int) -> None:
        self.buckets = buckets
        self.per_bucket = math.ceil(max_sessions / buckets)

    @property
    def most(self) -> int:
        return self.buckets * self.per_bucket


def is_cluster_url(url: str) -> bool:
    return url.startswith(("redis+cluster://", "rediss+cluster://"))


def _parse_cluster_url(url: str) -> tuple[list[ClusterNode], dict[str, Any], int]:
    """`redis+cluster://[user:password@]host:port,host:port/?buckets=N`: startup nodes, client options, buckets."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"cluster node {host_port!r} in {describe_url(url)!r} is not host:port")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    options: dict[str, Any] = {"ssl": parts.scheme.startswith("rediss")}
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if has_password:
            options["username"], options["password"] = unquote(user) or None, unquote(password)
        else:
            options["password"] = unquote(user)
    query = parse_qs(parts.query)
    buckets = int(query.get("buckets", [str(CLUSTER_BUCKETS)])[0])
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    return nodes, options, buckets


def describe_url(url: str) -> str:
    """Where a store URL points, for error messages: never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    hosts = parts.netloc.rpartition("@")[2]
    if is_cluster_url(url):
        return f"cluster {hosts}"
    return f"{parts.hostname}:{parts.port or 6379}{parts.path}"
