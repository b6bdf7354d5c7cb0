"""Session store fixtures: every contract test runs on the memory store, on the Redis store (a real Redis) and on
the Redis store over a real Redis Cluster of three masters.

Redis: `REDIS_URL` when set, else 127.0.0.1:6379 when it answers, else a redis-server started here. The cluster:
`REDIS_CLUSTER_URL` (redis+cluster://host:port,...) when set, else three redis-servers started here. Each test gets
its own key prefix and removes its keys afterwards, so a shared Redis is safe to use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from redis_server import RedisClusterServers, RedisServer

from bench.redis_server import redis_answers
from rnnserve.sessions.base import SessionEvents, SessionStore
from rnnserve.sessions.redis import RedisSessionStore

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
URL_FIXTURES = {"redis": "redis_url", "cluster": "redis_cluster_url"}  # store kind -> the fixture of its URL


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    elif redis_answers(LOCAL_REDIS):
        yield LOCAL_REDIS
    else:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@dataclass
class StoreFactory:
    """Opens stores of one kind. Redis stores opened by one factory share a key prefix: they are replicas of
    one deployment. Memory stores never share anything."""

    kind: str
    redis_url: str
    key_prefix: str = field(default_factory=lambda: f"rnnserve-test:{uuid.uuid4().hex}:")
    opened: list[SessionStore] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        return self.kind != "memory"

    def __call__(
        self, *, max_sessions: int = 100, max_state_bytes: int | None = None, events: SessionEvents | None = None
    ) -> SessionStore:
        store: SessionStore
        if self.kind == "memory":
            from rnnserve.sessions.memory import MemorySessionStore

            store = MemorySessionStore(max_sessions=max_sessions, max_state_bytes=max_state_bytes, events=events)
        else:
            store = RedisSessionStore.from_url(
                self.redis_url,
                max_sessions=max_sessions,
                max_state_bytes=max_state_bytes,
                default_ttl_s=60.0,
                events=events,
                key_prefix=self.key_prefix,
            )
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.aclose()
        if self.kind != "memory":
            delete_keys(self.redis_url, self.key_prefix)


def delete_keys(url: str, prefix: str) -> None:
    if url.startswith("redis+cluster://"):
        nodes = url.removeprefix("redis+cluster://").strip("/").split(",")
        cluster = redis.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(n.rpartition(":")[0], int(n.rpartition(":")[2])) for n in nodes]
        )
        try:
            for key in list(cluster.scan_iter(match=f"{prefix}*", count=500, target_nodes=cluster.PRIMARIES)):
                cluster.delete(key)  # one slot at a time
        finally:
            cluster.close()
        return
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    kind = request.param
    url = request.getfixturevalue(URL_FIXTURES[kind]) if kind in URL_FIXTURES else ""
    factory = StoreFactory(kind, url)
    try:
        yield factory
    finally:
        await factory.close()


@pytest.fixture
async def redis_stores(redis_url: str) -> AsyncIterator[StoreFactory]:
    """Redis stores only (for what the memory store does not have)."""
    factory = StoreFactory("redis", redis_url)
    try:
        yield factory
    finally:
        await factory.close()
