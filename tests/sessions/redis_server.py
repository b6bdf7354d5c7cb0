"""Real redis-server processes for tests: start, SIGKILL, restart on the same port (outage and failover tests), alone
or as a Redis Cluster of three masters.

Which binary, and a start that survives another process taking the port first: `bench.redis_server`, shared with
the benchmarks.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from bench.redis_server import free_port, redis_server_binary, start_redis


class RedisServer:
    """One redis-server on 127.0.0.1:`port` keeping its files (AOF) in `workdir`. Without a `port`, one is picked
    (`pick_port`), and the first start moves to another when the server exits at start; later starts (a restart
    after `kill`) keep the port."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        pick_port: Callable[[], int] = free_port,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port or pick_port()
        self._pick_port: Callable[[], int] | None = pick_port if port is None else None
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> RedisServer:
        """Start (or restart) the server and wait until it answers (after loading its AOF); its log is
        `workdir`/redis.log."""
        self._process, self.port = start_redis(
            self._command,
            lambda port: f"redis://127.0.0.1:{port}/0",
            self.workdir / "redis.log",
            port=self.port,
            pick_port=self._pick_port,
            timeout_s=timeout_s,
        )
        self._pick_port = None  # a restart keeps the port its clients know
        return self

    def _command(self, port: int) -> list[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--daemonize", "no", "--loglevel", "warning", "--protected-mode", "no"]
        if self.appendonly:
            # fsync every write: the test kills Redis with SIGKILL and expects nothing acknowledged to be lost.
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        return args + self.extra_args

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


def cluster_port() -> int:
    """A free port P below 55536 whose cluster bus port P + 10000 is free too (Redis's rule for cluster nodes)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 55_000)
        if port_free(port) and port_free(port + 10_000):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def redis_cli_binary() -> str | None:
    return shutil.which("redis-cli")


class RedisClusterServers:
    """Three redis-server masters with `--cluster-enabled yes` on loopback ports, joined into one cluster by
    `redis-cli --cluster create` (or, where redis-cli is missing, by CLUSTER MEET and ADDSLOTS, which is what it
    does). Each keeps its AOF and nodes.conf in its own folder, so a killed master restarts into the cluster."""

    def __init__(self, workdir: Path, *, masters: int = 3, appendonly: bool = False) -> None:
        cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        cluster_args += ["--cluster-node-timeout", "2000"]
        self.servers = [
            RedisServer(workdir / f"node-{i}", pick_port=cluster_port, appendonly=appendonly, extra_args=cluster_args)
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers) + "/"

    def start(self, timeout_s: float = 30.0) -> RedisClusterServers:
        for server in self.servers:
            server.start()
        cli = redis_cli_binary()
        if cli:
            nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=timeout_s,
            )
        else:
            self._join_by_hand()
        self.wait_ok(timeout_s)
        return self

    def _join_by_hand(self) -> None:
        clients = [redis.Redis(port=s.port) for s in self.servers]
        try:
            per = 16384 // len(clients)
            for i, client in enumerate(clients):
                last = 16383 if i == len(clients) - 1 else (i + 1) * per - 1
                client.execute_command("CLUSTER ADDSLOTS", *range(i * per, last + 1))
            for client in clients[1:]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", self.servers[0].port)
        finally:
            for client in clients:
                client.close()

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every node says cluster_state:ok."""
        deadline = time.monotonic() + timeout_s
        for server in self.servers:
            while True:
                client = redis.Redis(port=server.port, socket_timeout=0.5)
                try:
                    if client.cluster("info").get("cluster_state") == "ok":
                        break
                except redis.exceptions.RedisError:
                    pass
                finally:
                    client.close()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the cluster on {self.url} is not ok after {timeout_s} s")
                time.sleep(0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
