"""Many replicas, one truth: real `rnnserve serve` processes sharing one real Redis (AOF on), or a real Redis
Cluster of three masters (AOF on), killed mid-stream.

Clients stream sessions round-robin across the replicas and retry a failed step with the same `seq` (and the same
body) on the next replica. At the end every session must equal one whole-sequence predict of everything it was
sent: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.mmap_dict import MmapedDict
from sessions.redis_server import RedisClusterServers, RedisServer

from bench.redis_server import free_port
from rnnserve.metrics import MULTIPROC_DIR

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

MODEL = "orbit"  # bundled demo: LSTM(16) + GRU(16) over (x, y) points, one output per timestep
FEATURES = 2
START_TIMEOUT_S = 90.0
RETRY_BUDGET_S = 60.0  # a client gives up on one step after this long


def close(actual: np.ndarray, expected: np.ndarray) -> bool:
    return actual.shape == expected.shape and bool(np.all(np.abs(actual - expected) <= 1e-5 + 1e-5 * np.abs(expected)))


class Replica:
    """One `rnnserve serve` process on a loopback port, with the Redis store."""

    def __init__(self, store_url: str, log_dir: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.store_url = store_url
        self.log_path = log_dir / f"replica-{self.port}.log"
        # where its workers share their metrics (`rnnserve serve` makes a folder of its own when none is given)
        self.metrics_dir = log_dir / f"metrics-{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "rnnserve", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--store-url", self.store_url, "--workers", str(self.workers), "--log-level", "warning"]
        env = {**os.environ, MULTIPROC_DIR: str(self.metrics_dir)} if self.workers > 1 else os.environ.copy()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_path.read_text()[-2000:]
            try:
                if (await client.get(f"{self.url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError(f"replica on port {self.port} not ready after {START_TIMEOUT_S} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class Store:
    """The Redis behind the replicas: one server, or a cluster of three masters (whose first one is killed)."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.servers = RedisClusterServers(workdir, appendonly=True) if kind == "cluster" else None
        self.single = None if self.servers else RedisServer(workdir, appendonly=True)

    @property
    def url(self) -> str:
        return self.servers.url if self.servers else self.single.url  # type: ignore[union-attr]

    def start(self) -> Store:
        (self.servers or self.single).start()  # type: ignore[union-attr]
        return self

    def kill(self) -> None:
        (self.servers.servers[0] if self.servers else self.single).kill()  # type: ignore[union-attr]

    def restart(self) -> None:
        """Same port, reloads its AOF (a cluster node also its nodes.conf, and rejoins)."""
        if self.servers:
            self.servers.servers[0].start()
            self.servers.wait_ok()
        else:
            self.single.start()  # type: ignore[union-attr]

    def stop(self) -> None:
        (self.servers or self.single).stop()  # type: ignore[union-attr]


@dataclass
class Cluster:
    redis: Store
    replicas: list[Replica]
    client: httpx.AsyncClient

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]


@pytest.fixture
async def cluster(request: pytest.FixtureRequest, tmp_path: Path):
    """Replicas on a Redis with AOF: `request.param` = (replicas, workers each, "single" | "cluster"), (3, 1,
    "single") unless parametrised."""
    count, workers, kind = getattr(request, "param", (3, 1, "single"))
    redis = Store(kind, tmp_path / "redis").start()
    replicas = [Replica(redis.url, tmp_path, workers) for _ in range(count)]
    async with httpx.AsyncClient(timeout=10.0) as client:
        try:
            for replica in replicas:
                replica.start()
            await asyncio.gather(*(r.wait_ready(client) for r in replicas))
            yield Cluster(redis, replicas, client)
        finally:
            for replica in replicas:
                replica.stop()
            redis.stop()


async def open_session(cluster: Cluster, url: str) -> str:
    response = await cluster.client.post(f"{url}/v1/sessions", json={"model": MODEL})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


async def predict(cluster: Cluster, url: str, inputs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    response = await cluster.client.post(
        f"{url}/v1/models/{MODEL}/predict", json={"inputs": inputs.tolist(), "return_state": True}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return np.asarray(body["outputs"], dtype=np.float32), [np.asarray(s, dtype=np.float32) for s in body["states"]]


async def session_states(cluster: Cluster, url: str, session_id: str) -> tuple[int, list[np.ndarray]]:
    response = await cluster.client.get(f"{url}/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    return int(body["step"]), [np.asarray(s, dtype=np.float32) for s in body["states"]]


# ---- streaming clients -------------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One session's client: its chunks, the outputs it was answered, and what went wrong on the way."""

    session_id: str
    chunks: list[np.ndarray]  # each (1, T, FEATURES)
    outputs: list[np.ndarray] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def inputs(self) -> np.ndarray:
        return np.concatenate(self.chunks, axis=1)

    def failed(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


async def step_with_retries(client: httpx.AsyncClient, urls: list[str], first: int, stream: Stream, seq: int) -> Any:
    """POST one step, moving on to the next replica on any failure; the body (so its digest) never changes."""
    body = json.dumps({"inputs": stream.chunks[len(stream.outputs)].tolist(), "seq": seq}).encode()
    deadline = time.monotonic() + RETRY_BUDGET_S
    attempt = 0
    while time.monotonic() < deadline:
        url = urls[(first + attempt) % len(urls)]
        attempt += 1
        try:
            response = await client.post(
                f"{url}/v1/sessions/{stream.session_id}/step",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            stream.failed(type(exc).__name__)
            await asyncio.sleep(0.05)
            continue
        if response.status_code == 200:
            return response.json()
        # 503: Redis is down; 409: another replica was applying this very request (it answers the retry next time).
        stream.failed(str(response.status_code))
        assert response.status_code in (409, 503), response.text
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"step seq={seq} of {stream.session_id} got no answer in {RETRY_BUDGET_S} s: {stream.failures}"
    )


async def run_stream(cluster: Cluster, index: int, stream: Stream, progress: list[int]) -> None:
    urls = cluster.urls
    seq = 0
    for k in range(len(stream.chunks)):
        reply = await step_with_retries(cluster.client, urls, index + k, stream, seq)
        timesteps = stream.chunks[k].shape[1]
        assert reply["step"] == seq + timesteps, (stream.session_id, reply["step"], seq)
        stream.outputs.append(np.asarray(reply["outputs"], dtype=np.float32))
        seq += timesteps
        progress[0] += 1
        await asyncio.sleep(0.01)  # paced, so that the failures below land mid-stream


async def when_progress(progress: list[int], at_least: int) -> None:
    while progress[0] < at_least:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("cluster", [(3, 1, "single"), (3, 1, "cluster")], indirect=True, ids=["redis", "cluster"])
async def test_killing_a_replica_and_redis_mid_stream_loses_nothing_and_applies_nothing_twice(cluster: Cluster) -> None:
    rng = np.random.default_rng(7)
    sessions = await asyncio.gather(*(open_session(cluster, cluster.urls[i % 3]) for i in range(50)))
    streams = [
        Stream(sid, [rng.standard_normal((1, int(t), FEATURES)).astype(np.float32) for t in rng.integers(1, 4, 12)])
        for sid in sessions
    ]
    total_steps = sum(len(s.chunks) for s in streams)
    progress = [0]
    clients = asyncio.gather(*(run_stream(cluster, i, s, progress) for i, s in enumerate(streams)))

    await when_progress(progress, total_steps // 3)
    cluster.replicas[1].kill()  # a replica crashes, taking its in-flight requests with it
    await when_progress(progress, total_steps * 2 // 3)
    cluster.redis.kill()  # and then the store itself (on a cluster, one of its three masters)
    killed_at = progress[0]
    await asyncio.sleep(1.0)
    cluster.redis.restart()  # same port, reloads the AOF
    await asyncio.wait_for(clients, timeout=240)

    failures: dict[str, int] = {}
    for stream in streams:
        for kind, n in stream.failures.items():
            failures[kind] = failures.get(kind, 0) + n
    print(f"{cluster.redis.kind}: {total_steps} steps; Redis killed after {killed_at}; retried: {failures}")
    assert killed_at < total_steps, "Redis went down after the streams had finished"
    assert failures.get("503", 0) > 0 and sum(failures.values()) > failures["503"], failures  # both failures hit

    survivor = cluster.urls[0]
    for stream in streams:
        expected_outputs, expected_states = await predict(cluster, survivor, stream.inputs)
        step, states = await session_states(cluster, cluster.urls[2], stream.session_id)
        assert step == stream.inputs.shape[1], f"{stream.session_id}: step {step}, sent {stream.inputs.shape[1]}"
        assert close(np.concatenate(stream.outputs, axis=1), expected_outputs), stream.session_id
        assert all(close(a, b) for a, b in zip(states, expected_states, strict=True)), stream.session_id


async def rereads(client: httpx.AsyncClient, url: str) -> float:
    found = re.findall(r"^rnnserve_session_rereads_total (\S+)$", (await client.get(f"{url}/metrics")).text, re.M)
    return float(found[0]) if found else 0.0


@pytest.mark.parametrize("cluster", [(2, 1, "single")], indirect=True)
async def test_two_replicas_stepping_one_session_at_once_never_both_commit(cluster: Cluster) -> None:
    """Each replica keeps a copy of the session: when both step it at once, both compute from their copies and
    both try to commit; the compare-and-set lets one through, and the other re-reads and answers 409.

    Before each race both replicas read the session, so both hold a current copy: a replica that lost a race at the
    compare-and-set drops its copy, and without this read the next race could find it reading afresh every time
    (then its loss is decided by the seq check or by a compare-and-set of a fresh read, which counts no re-read)."""
    rng = np.random.default_rng(11)
    session_id = await open_session(cluster, cluster.urls[0])
    winners: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    for seq in range(0, 20 * 40, 40):
        read = await asyncio.gather(*(cluster.client.get(f"{url}/v1/sessions/{session_id}") for url in cluster.urls))
        assert [r.status_code for r in read] == [200, 200]
        bodies = [rng.standard_normal((1, 40, FEATURES)).astype(np.float32) for _ in cluster.urls]
        responses = await asyncio.gather(
            *(
                cluster.client.post(f"{url}/v1/sessions/{session_id}/step", json={"inputs": x.tolist(), "seq": seq})
                for url, x in zip(cluster.urls, bodies, strict=True)
            )
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 409], [r.text for r in responses]
        winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
        winners.append(bodies[winner])
        outputs.append(np.asarray(responses[winner].json()["outputs"], dtype=np.float32))
        loser = responses[1 - winner].json()
        assert loser["step"] == seq + 40

    decided_by_commit = sum([await rereads(cluster.client, url) for url in cluster.urls])
    print(f"20 races: {decided_by_commit:g} decided by the compare-and-set, the rest by the seq check")
    assert decided_by_commit == 20  # each loser stepped from its copy and was stopped by the compare-and-set
    expected_outputs, expected_states = await predict(cluster, cluster.urls[1], np.concatenate(winners, axis=1))
    step, states = await session_states(cluster, cluster.urls[0], session_id)
    assert step == 20 * 40
    assert close(np.concatenate(outputs, axis=1), expected_outputs)
    assert all(close(a, b) for a, b in zip(states, expected_states, strict=True))


def steps_per_worker(replica: Replica) -> list[int]:
    """Each worker process's own step count, from the file it keeps its metrics in (one per process id)."""
    counts = []
    for path in sorted(replica.metrics_dir.glob("counter_*.db")):
        values = MmapedDict.read_all_values_from_file(str(path))
        counts.append(sum(int(value) for key, value, *_ in values if '"rnnserve_session_steps_total"' in key))
    return counts


async def steps_reported(client: httpx.AsyncClient, url: str) -> float:
    found = re.findall(
        rf'^rnnserve_session_steps_total{{model="{MODEL}"}} (\S+)$', (await client.get(f"{url}/metrics")).text, re.M
    )
    return float(found[0]) if found else 0.0


@pytest.mark.parametrize("cluster", [(1, 2, "single")], indirect=True)
async def test_uvicorn_workers_share_sessions_through_redis(cluster: Cluster) -> None:
    """`--workers 2`: every request on a new connection, accepted by whichever worker process is free; the session
    is the same on both. (/readyz answers for the worker it reaches, so a step may still see 503 from a worker
    that is loading its models: the client retries it like any 503.)"""
    rng = np.random.default_rng(5)
    (url,) = cluster.urls
    session_id = await open_session(cluster, url)
    stream = Stream(session_id, [rng.standard_normal((1, 2, FEATURES)).astype(np.float32) for _ in range(30)])
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=10.0, limits=no_keepalive) as fresh_connections:
        await run_stream(replace(cluster, client=fresh_connections), 0, stream, [0])
        per_worker = steps_per_worker(cluster.replicas[0])
        assert len(per_worker) == 2 and sum(per_worker) == 30 and min(per_worker) > 0, per_worker  # both stepped
        # and /metrics, whichever worker answers it, counts the steps of both
        assert [await steps_reported(fresh_connections, url) for _ in range(6)] == [30.0] * 6

    expected_outputs, expected_states = await predict(cluster, url, stream.inputs)
    step, states = await session_states(cluster, url, session_id)
    assert step == 60
    assert close(np.concatenate(stream.outputs, axis=1), expected_outputs)
    assert all(close(a, b) for a, b in zip(states, expected_states, strict=True))
