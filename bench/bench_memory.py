"""What idle sessions cost in the memory store: RSS growth over N sessions of the bench model (SimpleRNN 128).

    python -m bench.bench_memory [--sessions 100000] [--units 128]

Sessions are made as the service makes them (a 192-bit URL-safe id, zero states from the signature, the default
TTL) and created in a `MemorySessionStore`; the resident set size is read from /proc before and after, around a
garbage collection. Two more figures give the cost once every session has stepped once: without `seq` (new states
only), then with `seq` (the session also keeps that request's digest and its JSON reply, to answer a retry).

Prints one JSON object: bytes per session in each of the three cases, and the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import time
from collections.abc import Sequence

import numpy as np

from rnnserve.api.v1.codec import encode_step
from rnnserve.inference import SESSION_ID_BYTES, StepResult
from rnnserve.sessions.base import SessionRecord
from rnnserve.sessions.memory import MemorySessionStore
from rnnserve.signature import ModelSignature, TensorInfo
from rnnserve.validation import zero_states

TTL_S = 600.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def signature(units: int) -> ModelSignature:
    return ModelSignature(
        name="bench_rnn",
        inputs=(TensorInfo("x", (None, None, 32), "float32"),),
        outputs=(TensorInfo("simple_rnn", (None, units), "float32"),),
        states=(TensorInfo("simple_rnn/h", (None, units), "float32"),),
    )


def new_record(sig: ModelSignature) -> SessionRecord:
    now = time.time()
    return SessionRecord(
        session_id=secrets.token_urlsafe(SESSION_ID_BYTES),
        model=sig.name,
        batch_size=1,
        states=tuple(zero_states(sig, 1)),
        ttl_s=TTL_S,
        expires_at=now + TTL_S,
        created_at=now,
    )


async def step_all(store: MemorySessionStore, ids: list[str], units: int, *, with_seq: bool) -> None:
    """One step of every session: new states and, for a request that carried `seq`, its digest and reply."""
    rng = np.random.default_rng(0)
    for session_id in ids:
        record = await store.get(session_id)
        states = (rng.standard_normal((1, units)).astype(np.float32),)
        reply = encode_step(StepResult({"y": states[0]}, None, session_id=session_id, step=record.step + 1))
        digest, cached = (secrets.token_bytes(16), reply) if with_seq else (None, None)
        await store.commit(record.advanced(states, 1, digest, cached), record.version)


async def measure(sessions: int, units: int) -> dict[str, float]:
    sig = signature(units)
    store = MemorySessionStore(max_sessions=sessions + 1)
    gc.collect()
    before = rss_bytes()
    ids = []
    for _ in range(sessions):
        record = new_record(sig)
        await store.create(record)
        ids.append(record.session_id)
    gc.collect()
    idle = rss_bytes()
    await step_all(store, ids, units, with_seq=False)
    gc.collect()
    stepped = rss_bytes()
    await step_all(store, ids, units, with_seq=True)
    gc.collect()
    with_reply = rss_bytes()
    await store.aclose()
    return {
        "sessions": sessions,
        "units": units,
        "bytes_per_idle_session": (idle - before) / sessions,
        "bytes_per_session_after_a_step": (stepped - before) / sessions,
        "bytes_per_session_after_a_step_with_seq": (with_reply - before) / sessions,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=128)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.sessions, args.units))))


if __name__ == "__main__":
    main()
