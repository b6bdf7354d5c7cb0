"""What only the Redis store does: raw bytes in Redis, TTL kept by Redis, eviction, outage and recovery."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer
from session_records import RecordingEvents, make_record, states_equal

from bench.redis_server import RedisExited, redis_server_binary, start_redis
from rnnserve.errors import SeqConflict, SessionNotFound, StoreUnavailable, TooManySessions
from rnnserve.sessions.codec import decode_record
from rnnserve.sessions.redis import MAX_CONNECTIONS, RedisSessionStore

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_session_is_one_string_of_raw_float32_with_a_redis_ttl(redis_stores, redis_url: str) -> None:
    store = redis_stores()
    record = make_record(units=(128,), ttl_s=30, model="demo")
    await store.create(record)

    client = Redis.from_url(redis_url)
    try:
        key = f"{redis_stores.key_prefix}s:{record.session_id}"
        raw = await client.get(key)
        pttl = await client.pttl(key)
    finally:
        await client.aclose()

    header, name, states = 60, len(b"demo"), 4 + 4 + 1 + 2 * 4 + 128 * 4  # states: magic, count, ndim, shape, data
    assert len(raw) == header + name + states  # nothing else: no field names, no reply kept without seq
    assert raw[-128 * 4 :] == record.states[0].astype("<f4").tobytes()
    fields = decode_record(raw)
    assert (fields.version, fields.step, fields.ttl_ms, fields.model) == (0, 0, 30_000, "demo")
    assert states_equal(fields.states, record.states)
    assert 29_000 < pttl <= 30_000


async def test_default_ttl_applies_when_the_record_has_none(redis_stores, redis_url: str) -> None:
    store = RedisSessionStore.from_url(
        redis_url, max_sessions=10, default_ttl_s=0.3, key_prefix=redis_stores.key_prefix
    )
    redis_stores.opened.append(store)
    record = make_record(ttl_s=0)
    await store.create(record)

    assert (await store.get(record.session_id)).ttl_s == pytest.approx(0.3)
    await asyncio.sleep(0.6)
    with pytest.raises(SessionNotFound):
        await store.get(record.session_id)


async def test_a_session_redis_dropped_early_counts_as_evicted(redis_stores, redis_url: str) -> None:
    events = RecordingEvents()
    store = redis_stores(events=events)
    record = make_record()
    await store.create(record)
    client = Redis.from_url(redis_url)
    try:
        await client.delete(f"{redis_stores.key_prefix}s:{record.session_id}")  # as maxmemory eviction would
    finally:
        await client.aclose()

    with pytest.raises(SessionNotFound):
        await store.get(record.session_id)
    assert (events.evicted_n, events.expired_n) == (1, 0)
    assert await store.count() == 0


async def test_an_evicted_session_gives_its_bytes_back(redis_stores, redis_url: str) -> None:
    store = redis_stores(max_state_bytes=600)  # one 128-unit row: 512 bytes
    record = make_record()
    await store.create(record)
    with pytest.raises(TooManySessions, match="max_state_bytes"):
        await store.create(make_record())
    client = Redis.from_url(redis_url)
    try:
        await client.delete(f"{redis_stores.key_prefix}s:{record.session_id}")  # as maxmemory eviction would
        with pytest.raises(SessionNotFound):
            await store.get(record.session_id)  # the read that finds it gone gives its bytes back
        assert int(await client.get(f"{redis_stores.key_prefix}held") or 0) == 0
        assert await client.hlen(f"{redis_stores.key_prefix}sizes") == 0
    finally:
        await client.aclose()
    await store.create(make_record())


async def test_an_evicted_session_leaves_its_tenants_usage(redis_stores, redis_url: str) -> None:
    store = redis_stores()
    record = make_record()._replace(owner="acme")
    await store.create(record)
    await store.create(make_record()._replace(owner="acme"))
    client = Redis.from_url(redis_url)
    try:
        await client.delete(f"{redis_stores.key_prefix}s:{record.session_id}")  # as maxmemory eviction would
        with pytest.raises(SessionNotFound):
            await store.get(record.session_id)
        assert await store.usage("acme") == (1, 512)
        await store.delete((await store.scan(owner="acme")).sessions[0].session_id)
        assert await store.usage("acme") == (0, 0)
        assert await client.hlen(f"{redis_stores.key_prefix}tenants") == 0  # no counter left behind
    finally:
        await client.aclose()


async def test_a_resent_commit_is_recognised_as_applied(redis_stores, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py re-sends a command after a dropped connection; the same commit twice must not conflict."""
    store = redis_stores()
    record = make_record()
    await store.create(record)
    stepped = record.advanced(make_record(seed=1).states, 1, b"d", b"r")
    monkeypatch.setattr("rnnserve.sessions.redis.os.urandom", lambda n: b"same-tag"[:n])
    await store.get(record.session_id)  # what this replica saw: version 0 and its tag

    await store.commit(stepped, expected_version=0)
    await store.commit(stepped, expected_version=0)  # the same bytes again: already applied
    monkeypatch.setattr("rnnserve.sessions.redis.os.urandom", lambda n: b"othertag"[:n])
    with pytest.raises(SeqConflict):
        await store.commit(stepped, expected_version=0)
    assert (await store.get(record.session_id)).version == 1


async def test_outage_answers_store_unavailable_then_recovers_with_nothing_lost(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    store = RedisSessionStore.from_url(server.url, max_sessions=10, default_ttl_s=60)
    try:
        record = make_record()
        await store.create(record)
        stepped = record.advanced(make_record(seed=1).states, 4, b"d", b"r")
        await store.commit(stepped, expected_version=0)

        server.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get(record.session_id)
        assert time.monotonic() - started < 5.0  # short timeouts: a 503, not a hung request
        with pytest.raises(StoreUnavailable):
            await store.commit(stepped.advanced(stepped.states, 1, None, None), expected_version=1)
        with pytest.raises(StoreUnavailable):
            await store.ping()

        server.start()  # same port, reloads the AOF
        await store.ping()
        got = await store.get(record.session_id)
        assert (got.step, got.version, got.last_response) == (4, 1, b"r")
        assert states_equal(got.states, stepped.states)
        await store.commit(got.advanced(got.states, 1, None, None), expected_version=1)  # scripts reload too
        assert (await store.get(record.session_id)).step == 5
    finally:
        await store.aclose()
        server.stop()


async def test_unavailable_message_names_the_store_but_not_the_password() -> None:
    store = RedisSessionStore.from_url(
        "redis://user:s3cret@127.0.0.1:1/2", max_sessions=1, default_ttl_s=1
    )  # port 1: nothing listens there
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.ping()
    finally:
        await store.aclose()
    assert "127.0.0.1:1/2" in info.value.detail
    assert "s3cret" not in info.value.detail


async def test_a_burst_beyond_the_connection_pool_waits_instead_of_failing(redis_stores) -> None:
    store = redis_stores()
    record = make_record()
    await store.create(record)
    burst = 5 * MAX_CONNECTIONS
    got = await asyncio.gather(*(store.get(record.session_id) for _ in range(burst)))
    assert len(got) == burst and all(g.session_id == record.session_id for g in got)


async def test_steps_from_a_copy_cost_one_round_trip_each_and_none_to_load(make_store) -> None:
    if not make_store.shared:
        pytest.skip("counts Redis round trips")
    events = RecordingEvents()
    store = make_store(events=events)
    record = make_record()
    await store.create(record)
    for step in range(10):
        current, fresh = await store.load(record.session_id)
        assert not fresh and current.step == step
        await store.commit(current.advanced(current.states, 1, None, None), expected_version=current.version)
    assert events.round_trips == {"create": 1, "commit": 10}


async def test_the_calls_of_one_loop_iteration_share_one_round_trip(make_store) -> None:
    """As when the batcher resolves a model call's steps together: 64 commits, then 64 reads, one exchange each."""
    if not make_store.shared:
        pytest.skip("counts Redis round trips")
    events = RecordingEvents()
    store = make_store(events=events, max_sessions=10_000)
    records = [make_record(seed=i) for i in range(64)]
    for record in records:
        await store.create(record)
    events.round_trips.clear()

    await asyncio.gather(*(store.commit(r.advanced(r.states, 1, None, None), expected_version=0) for r in records))
    reader = make_store(events=events, max_sessions=10_000)  # another replica: nothing cached, every session read
    got = await asyncio.gather(*(reader.get(r.session_id) for r in records))

    assert [g.step for g in got] == [1] * 64
    # one script call per bucket, all in one pipeline: one exchange (one per node, in parallel, on a cluster)
    assert events.round_trips == {"commit": 1, "load": 1}


@pytest.fixture
def tls_redis(tmp_path: Path):
    """A private redis-server speaking only TLS, with an ACL user `rnn` (password `s3cret`) and no default user.

    It once skipped in CI ("exited at start") and passed alone: the likely cause, a port picked free and taken by
    another process before the server bound it (on every address, IPv6 too, as it bound then), after which any
    exit at start was taken for a build without TLS. Now it binds 127.0.0.1 alone, `bench.redis_server.start_redis`
    moves it to another port when it exits at start, and it skips only when the server says it has no TLS; any
    other failure fails, quoting the server's log (tmp_path/redis-tls.log)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip

    def command(port: int) -> list[str]:
        args = ["--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port), "--dir", str(tmp_path)]
        args += ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
        args += ["--tls-auth-clients", "no", "--save", ""]
        args += ["--user", "default", "off", "--user", "rnn", "on", ">s3cret", "~*", "+@all"]
        return [redis_server_binary(), *args]

    def url(port: int) -> str:
        return f"rediss://rnn:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={cert}"

    try:
        process, port = start_redis(command, url, tmp_path / "redis-tls.log", timeout_s=20)
    except RedisExited as exited:
        if exited.no_tls:
            pytest.skip(f"this redis-server does not speak TLS: {exited.output.strip()[-300:]}")
        raise
    try:
        yield url(port)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_tls_and_an_acl_user_in_the_url(tls_redis: str) -> None:
    store = RedisSessionStore.from_url(tls_redis, max_sessions=10, default_ttl_s=60)
    try:
        record = make_record()
        await store.create(record)
        await store.commit(record.advanced(make_record(seed=1).states, 2, None, None), expected_version=0)
        got = await store.get(record.session_id)
        assert got.step == 2 and states_equal(got.states, make_record(seed=1).states)
    finally:
        await store.aclose()
    wrong = RedisSessionStore.from_url(tls_redis.replace("s3cret", "wrong"), max_sessions=10, default_ttl_s=60)
    try:
        with pytest.raises(StoreUnavailable) as refused:
            await wrong.ping()
        assert "wrong" not in refused.value.detail and "s3cret" not in refused.value.detail
    finally:
        await wrong.aclose()


async def test_the_copies_kept_for_load_stay_within_their_byte_budget_and_hold_no_reply(redis_stores) -> None:
    one = 240 + 128 * 4  # a record's overhead and its (1, 128) float32 state
    store = RedisSessionStore.from_url(
        redis_stores.redis_url,
        max_sessions=10,
        default_ttl_s=60,
        key_prefix=redis_stores.key_prefix,
        cache_bytes=2 * one,
    )
    redis_stores.opened.append(store)
    records = [make_record(seed=i) for i in range(3)]
    for record in records:
        await store.create(record)
        await store.commit(record.advanced(record.states, 1, b"digest", b"a large reply"), expected_version=0)

    fresh = [(await store.load(r.session_id))[1] for r in reversed(records)]
    assert fresh == [False, False, True]  # the least recently used copy made room
    copy, fresh = await store.load(records[1].session_id)
    assert not fresh and (copy.last_digest, copy.last_response) == (b"digest", None)  # a retry reads afresh
    assert (await store.get(records[1].session_id)).last_response == b"a large reply"
