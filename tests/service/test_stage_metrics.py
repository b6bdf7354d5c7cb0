"""/metrics says where a step's time goes, per model: the batcher's queue, the model call, the store's read and
commit, and encoding the reply (on the memory and the Redis store, batching on and off)."""

from __future__ import annotations

import re

import httpx
import numpy as np
from service_client import open_session, step
from service_models import FEATURES

STAGES = ("queue", "model", "store_read", "store_commit", "encode")


def stage_counts(client: httpx.Client, model: str) -> dict[str, float]:
    text = client.get("/metrics").text
    pattern = rf'^rnnserve_stage_seconds_count\{{model="{model}",stage="(\w+)"\}} (\S+)$'
    return {stage: float(count) for stage, count in re.findall(pattern, text, re.M)}


def test_every_stage_of_a_step_is_timed(any_client: httpx.Client) -> None:
    session_id = open_session(any_client, "gru")["session_id"]
    before = stage_counts(any_client, "gru")
    for _ in range(3):
        step(any_client, session_id, np.zeros((1, 2, FEATURES), np.float32))
    after = stage_counts(any_client, "gru")
    for stage in STAGES:
        assert after.get(stage, 0) - before.get(stage, 0) == 3, (stage, before, after)
    # buckets fine enough for stages of microseconds (a request's latency buckets start at 0.5 ms)
    assert 'rnnserve_stage_seconds_bucket{le="1e-05",model="gru",stage="encode"}' in any_client.get("/metrics").text
