"""/v2 tests: a real server over a folder of small exported models, driven by tritonclient.http."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from app_harness import ServerThread
from sessions.redis_server import RedisServer
from v2_models import MODELS
from v2_server import settings_for

from rnnserve.export.package import write_package

BROKEN = "broken"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("v2-models")
    for name, build in MODELS.items():
        write_package(build(), root / name)
    (root / f"{BROKEN}.keras").write_bytes(b"not a zip file")  # an entry that fails to load
    return root


@pytest.fixture(scope="session")
def server(models_dir: Path) -> Iterator[ServerThread]:
    running = ServerThread(settings_for(models_dir)).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: ServerThread) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address, network_timeout=30.0) as tc:
        yield tc


@pytest.fixture
def make_server(models_dir: Path) -> Iterator[Callable[..., ServerThread]]:
    """Start extra servers with other settings; they stop after the test."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        running = ServerThread(settings_for(models_dir, **overrides)).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    redis = RedisServer(tmp_path_factory.mktemp("v2-redis")).start()
    try:
        yield redis.url
    finally:
        redis.stop()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2024)
