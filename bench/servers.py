"""Benchmark servers as child processes pinned to one core: `rnnserve serve`, the minimal FastAPI app, and the
redis-server behind the Redis-backed cases.

Each `Server` knows its URL and reads its own CPU time from /proc, so a benchmark can report server CPU per
request next to throughput (a figure that a noisy, shared machine disturbs much less).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bench.redis_server import free_port, redis_server_binary, start_redis

REPO = Path(__file__).resolve().parents[1]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def pinned(command: Sequence[str], cpu: int | None) -> list[str]:
    """`command` under `taskset -c cpu` (unpinned where taskset is missing or cpu is None)."""
    if cpu is None or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", str(cpu), *command]


class Server:
    """A server child process on a free port; `start()` waits until `ready_path` answers 200."""

    def __init__(self, name: str, command: Sequence[str], port: int, ready_path: str, env: dict[str, str]) -> None:
        self.name, self.command, self.port, self.ready_path = name, list(command), port, ready_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {err[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1.0) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become ready on {self.url}{self.ready_path}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def rnnserve(name: str, models: Path, cpu: int | None, *, executor: str, extra_env: dict[str, str] | None = None,
             store: str | None = None, args: Sequence[str] = ()) -> Server:  # fmt: skip
    """`rnnserve serve` on the bench models with the server's default settings (its logging included: INFO, the
    access log's summary), room for every benchmark session and `args` (other flags); on the memory store unless
    `store` names another."""
    port = free_port()
    command = [
        sys.executable, "-m", "rnnserve", "serve", "--models", str(models), "--port", str(port), "--executor",
        executor, "--max-sessions", "1000000", "--default-ttl-s", "3600",
    ]  # fmt: skip
    if store is not None:
        command += ["--store-url", store]
    command += list(args)
    env = {**os.environ, **(extra_env or {})}
    return Server(name, pinned(command, cpu), port, "/readyz", env)


class RedisProcess:
    """A redis-server child process for the Redis-backed cases: AOF on, fsync every second (Redis's default for
    AOF; deploy/ uses `always`), its files and its log (redis.log) in `workdir`. Started by `bench.redis_server`,
    which moves to another port when the one picked was taken before the server bound it."""

    def __init__(self, workdir: Path, cpu: int | None, appendfsync: str = "everysec") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.cpu = cpu
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, port: int) -> list[str]:
        return pinned(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--loglevel", "warning"],
            self.cpu,
        )  # fmt: skip

    def start(self, timeout: float = 15.0) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process, self.port = start_redis(
            self.command, lambda port: f"redis://127.0.0.1:{port}/0", self.workdir / "redis.log", port=self.port,
            timeout_s=timeout,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


def minimal_app(cpu: int | None) -> Server:
    """bench/minimal_app.py under uvicorn with uvloop and httptools: the ceiling of a plain FastAPI endpoint."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--port", str(port), "--loop", "uvloop", "--http",
        "httptools", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return Server("minimal FastAPI", pinned(command, cpu), port, "/docs", dict(os.environ))
