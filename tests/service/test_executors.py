"""The data plane on each executor: `direct` (one call per request) and `dynamic` (concurrent calls of one model
merged into one). Streams of several sessions stepping at once must each equal their own whole-sequence predict."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import as_list, close
from service_models import FEATURES

SESSIONS = 6
CHUNKS = (1, 2, 1)


@pytest.mark.parametrize("executor", ["direct", "dynamic"])
async def test_concurrent_sessions_each_equal_their_own_predict(
    make_server: Callable[..., ServerThread], executor: str, rng: np.random.Generator
) -> None:
    server = make_server(executor=executor, max_batch_size=8, max_delay_ms=5.0)
    xs = rng.normal(size=(SESSIONS, 1, sum(CHUNKS), FEATURES)).astype(np.float32)
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:
        created = await asyncio.gather(*(client.post("/v1/sessions", json={"model": "gru"}) for _ in range(SESSIONS)))
        sids = [r.json()["session_id"] for r in created]

        async def stream(sid: str, x: np.ndarray) -> tuple[np.ndarray, list]:
            outputs, start = [], 0
            for size in CHUNKS:
                body = {"inputs": as_list(x[:, start : start + size]), "seq": start, "return_state": True}
                reply = (await client.post(f"/v1/sessions/{sid}/step", json=body)).json()
                outputs.append(np.asarray(reply["outputs"]))
                start += size
            return np.concatenate(outputs, axis=1), reply["states"]

        streamed = await asyncio.gather(*(stream(sid, x) for sid, x in zip(sids, xs, strict=True)))
        wholes = await asyncio.gather(
            *(client.post("/v1/models/gru/predict", json={"inputs": as_list(x), "return_state": True}) for x in xs)
        )
    for (outputs, states), whole in zip(streamed, wholes, strict=True):
        assert close(outputs, whole.json()["outputs"])
        assert close(states[0], whole.json()["states"][0])
