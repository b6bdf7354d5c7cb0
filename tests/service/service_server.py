"""A real server for the service tests: uvicorn in a thread on a port the OS picks, serving a model repository of
small seeded models exported as packages."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from service_models import MODELS

from service.app import create_app
from service.cli import uvicorn_options
from service.settings import Settings

BROKEN_MODEL = "broken"


class ServerThread:
    """A uvicorn server for one app, in a daemon thread (its own event loop), on a port the OS picks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": 0, "log_level": "warning"}
        config = uvicorn.Config(self.app, lifespan="on", **options)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
