"""The SessionStore contract, run on every store (memory and Redis): what the data plane relies on."""

from __future__ import annotations

import asyncio
import time

import pytest
from session_records import RecordingEvents, make_record, states_equal

from rnnserve.errors import SeqConflict, SessionNotFound, TooManySessions

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_create_then_get_returns_the_same_record(make_store) -> None:
    store = make_store()
    record = make_record(units=(128, 128), batch_size=2)
    await store.create(record)

    got = await store.get(record.session_id)

    assert got.session_id == record.session_id
    assert (got.model, got.batch_size, got.step, got.version) == ("demo", 2, 0, 0)
    assert got.ttl_s == pytest.approx(record.ttl_s)
    assert states_equal(got.states, record.states)
    assert (got.prev_step, got.last_digest, got.last_response) == (None, None, None)
    assert await store.count() == 1


async def test_create_refuses_an_existing_id(make_store) -> None:
    store = make_store()
    record = make_record()
    await store.create(record)
    with pytest.raises(ValueError, match="already exists"):
        await store.create(make_record(record.session_id, seed=1))
    assert states_equal((await store.get(record.session_id)).states, record.states)


async def test_get_unknown_session_is_not_found(make_store) -> None:
    store = make_store()
    with pytest.raises(SessionNotFound):
        await store.get("no-such-session")


async def test_commit_installs_the_next_record(make_store) -> None:
    store = make_store()
    record = make_record()
    await store.create(record)
    stepped = record.advanced(make_record(seed=1).states, 5, b"digest", b'{"step": 5}')

    await store.commit(stepped, expected_version=0)
    got = await store.get(record.session_id)

    assert (got.step, got.version, got.prev_step) == (5, 1, 0)
    assert (got.last_digest, got.last_response) == (b"digest", b'{"step": 5}')
    assert states_equal(got.states, stepped.states)


async def test_commit_with_a_stale_version_conflicts_and_changes_nothing(make_store) -> None:
    store = make_store()
    record = make_record()
    await store.create(record)
    first = record.advanced(make_record(seed=1).states, 1, b"a", b"A")
    await store.commit(first, expected_version=0)

    late = record.advanced(make_record(seed=2).states, 1, b"b", b"B")
    with pytest.raises(SeqConflict) as conflict:
        await store.commit(late, expected_version=0)
    assert conflict.value.extra["step"] == 1

    got = await store.get(record.session_id)
    assert (got.version, got.last_digest) == (1, b"a")
    assert states_equal(got.states, first.states)


async def test_reset_then_commit_is_a_new_version_not_an_old_step_zero(make_store) -> None:
    store = make_store()
    record = make_record()
    await store.create(record)
    stepped = record.advanced(record.states, 3, b"d", b"r")
    await store.commit(stepped, expected_version=0)
    reset = stepped.reset(make_record(seed=3).states)
    await store.commit(reset, expected_version=1)

    with pytest.raises(SeqConflict):  # a replica still holding the original step-0 record must not win
        await store.commit(record.advanced(record.states, 1, b"x", b"y"), expected_version=0)
    got = await store.get(record.session_id)
    assert (got.step, got.version, got.prev_step, got.last_response) == (0, 2, None, None)
    assert states_equal(got.states, reset.states)


async def test_commit_to_a_deleted_session_is_not_found(make_store) -> None:
    store = make_store()
    record = make_record()
    await store.create(record)
    assert await store.delete(record.session_id) is True

    with pytest.raises(SessionNotFound):
        await store.commit(record.advanced(record.states, 1, None, None), expected_version=0)
    with pytest.raises(SessionNotFound):
        await store.get(record.session_id)
    assert await store.delete(record.session_id) is False
    assert await store.count() == 0


async def test_concurrent_commits_on_one_version_have_exactly_one_winner(make_store) -> None:
    store = make_store()
    record = make_record()
    await store.create(record)
    candidates = [record.advanced(make_record(seed=s).states, 1, bytes([s]), None) for s in range(8)]

    results = await asyncio.gather(*(store.commit(c, expected_version=0) for c in candidates), return_exceptions=True)

    winners = [c for c, r in zip(candidates, results, strict=True) if r is None]
    assert len(winners) == 1
    assert all(isinstance(r, SeqConflict) for r in results if r is not None)
    got = await store.get(record.session_id)
    assert got.last_digest == winners[0].last_digest and states_equal(got.states, winners[0].states)


async def test_session_expires_after_its_ttl(make_store) -> None:
    events = RecordingEvents()
    store = make_store(events=events)
    record = make_record(ttl_s=0.3)
    await store.create(record)

    await asyncio.sleep(0.6)

    with pytest.raises(SessionNotFound):
        await store.get(record.session_id)
    assert await store.count() == 0
    assert events.expired_n == 1


async def test_get_and_commit_renew_the_ttl(make_store) -> None:
    store = make_store()
    record = make_record(ttl_s=0.8)
    await store.create(record)
    started = time.monotonic()

    for _ in range(3):  # 1.2 s of use in all: well past the first expiry
        await asyncio.sleep(0.4)
        got = await store.get(record.session_id)
    await store.commit(got.advanced(got.states, 1, None, None), expected_version=got.version)
    assert time.monotonic() - started > 1.0
    assert got.expires_at > time.time() + 0.5

    await asyncio.sleep(0.5)
    assert (await store.get(record.session_id)).step == 1  # the commit renewed it too
    await asyncio.sleep(1.2)
    with pytest.raises(SessionNotFound):
        await store.get(record.session_id)


def in_one_bucket(store, n: int) -> list[str]:
    """`n` session ids that share one cap bucket (any ids where the store has one cap; see `BucketCap`)."""
    bucket_of = getattr(store, "bucket_of", lambda session_id: 0)
    ids: dict[int, list[str]] = {}
    while True:
        session_id = make_record().session_id
        same = ids.setdefault(bucket_of(session_id), [])
        same.append(session_id)
        if len(same) == n:
            return same


async def test_cap_refuses_one_more_session_until_one_goes(make_store) -> None:
    buckets = getattr(make_store(), "buckets", 1)
    store = make_store(max_sessions=2 * buckets)  # a cap of 2 in each bucket
    ids = in_one_bucket(store, 5)
    first, second, third = make_record(ids[0]), make_record(ids[1], ttl_s=0.3), make_record(ids[2])
    await store.create(first)
    await store.create(second)

    with pytest.raises(TooManySessions):
        await store.create(third)
    await store.delete(first.session_id)
    await store.create(third)  # a deleted session frees its slot

    with pytest.raises(TooManySessions):
        await store.create(make_record(ids[3]))
    await asyncio.sleep(0.6)
    await store.create(make_record(ids[4]))  # so does an expired one
    assert await store.count() == 2


async def test_the_cap_bounds_the_whole_store_across_buckets(make_store) -> None:
    store = make_store(max_sessions=24)
    created = 0
    for _ in range(120):
        try:
            await store.create(make_record())
            created += 1
        except TooManySessions:
            pass
    buckets, most = getattr(store, "buckets", 1), getattr(store, "most_sessions", 24)
    assert 24 <= most < 24 + buckets
    assert created == await store.count() <= most
    if buckets == 1:
        assert created == 24  # one bucket: the cap is exact


async def test_the_byte_budget_refuses_a_session_until_bytes_are_given_back(make_store) -> None:
    buckets = getattr(make_store(), "buckets", 1)
    store = make_store(max_state_bytes=1200 * buckets)  # 1200 bytes in each bucket; a 128-unit row takes 512
    ids = in_one_bucket(store, 6)
    first, second = make_record(ids[0]), make_record(ids[1], ttl_s=0.3)
    await store.create(first)
    await store.create(second)  # 1024 bytes

    with pytest.raises(TooManySessions, match="max_state_bytes") as refused:
        await store.create(make_record(ids[2]))
    assert (refused.value.extra["limit"], refused.value.extra["needed"]) == (1200, 1536)
    assert refused.value.extra["setting"] == "max_state_bytes"
    await store.create(make_record(ids[2], units=(32,)))  # a smaller one fits: 1152
    await store.delete(ids[2])
    await store.delete(first.session_id)  # a deleted session gives its bytes back
    await store.create(make_record(ids[3]))

    with pytest.raises(TooManySessions):
        await store.create(make_record(ids[4]))
    await asyncio.sleep(0.6)
    await store.create(make_record(ids[4]))  # so does an expired one
    assert await store.count() == 2


async def test_a_create_costs_the_same_however_many_sessions_the_store_holds(make_store) -> None:
    events = RecordingEvents()
    store = make_store(max_sessions=1000, max_state_bytes=10**9, events=events)
    for _ in range(200):
        await store.create(make_record())
    trips = dict(events.round_trips)
    await store.create(make_record())
    # one script call, no listing of the store (a shared store answers with no round trip but the create's)
    assert {op: n - trips.get(op, 0) for op, n in events.round_trips.items() if n != trips.get(op, 0)} == (
        {"create": 1} if make_store.shared else {}
    )


async def test_usage_counts_a_tenants_sessions_and_bytes_as_they_come_and_go(make_store) -> None:
    events = RecordingEvents()
    store = make_store(events=events)
    acme = [make_record(ttl_s=60 if i else 0.3)._replace(owner="acme") for i in range(4)]  # 512 bytes each
    for record in acme:
        await store.create(record)
    await store.create(make_record(units=(32, 32))._replace(owner="zeta"))  # 256 bytes
    await store.create(make_record())  # no owner
    assert await store.usage("acme") == (4, 2048)
    assert await store.usage("zeta") == (1, 256)
    assert await store.usage("nobody") == (0, 0)

    await store.delete(acme[1].session_id)
    assert await store.usage("acme") == (3, 1536)
    await asyncio.sleep(0.6)  # acme[0] expires
    assert await store.usage("acme") == (2, 1024)
    for record in acme[2:]:
        await store.delete(record.session_id)
    assert await store.usage("acme") == (0, 0)
    if make_store.shared:  # counters, not a listing: one round trip, whatever the store holds
        assert "list" not in events.round_trips


async def test_lock_serialises_one_session_in_arrival_order(make_store) -> None:
    store = make_store()
    order: list[int] = []

    async def worker(i: int) -> None:
        async with store.lock("s1"):
            order.append(i)
            await asyncio.sleep(0.01)
            order.append(i)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(worker(i)))
        await asyncio.sleep(0)  # let it queue before the next one arrives
    await asyncio.gather(*tasks)

    assert order == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


async def test_locks_of_different_sessions_do_not_block_each_other(make_store) -> None:
    store = make_store()
    async with store.lock("a"):
        await asyncio.wait_for(_enter_and_leave(store, "b"), timeout=1.0)


async def _enter_and_leave(store, session_id: str) -> None:
    async with store.lock(session_id):
        pass


async def test_ping_answers_when_the_store_is_up(make_store) -> None:
    await make_store().ping()


async def test_two_replicas_see_one_truth_and_only_one_commit_wins(make_store) -> None:
    if not make_store.shared:
        pytest.skip(f"{make_store.kind} stores do not share sessions between instances")
    replica_a, replica_b = make_store(), make_store()
    record = make_record()
    await replica_a.create(record)
    seen_a, seen_b = await replica_a.get(record.session_id), await replica_b.get(record.session_id)
    step_a = seen_a.advanced(make_record(seed=1).states, 1, b"a", b"A")
    step_b = seen_b.advanced(make_record(seed=2).states, 1, b"b", b"B")

    results = await asyncio.gather(
        replica_a.commit(step_a, expected_version=0),
        replica_b.commit(step_b, expected_version=0),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["NoneType", "SeqConflict"]
    winner = step_a if results[0] is None else step_b
    for replica in (replica_a, replica_b):
        got = await replica.get(record.session_id)
        assert got.last_digest == winner.last_digest and states_equal(got.states, winner.states)
    assert await replica_b.count() == 1


async def test_load_steps_from_a_copy_that_a_commit_elsewhere_makes_stale(make_store) -> None:
    if not make_store.shared:
        pytest.skip(f"{make_store.kind} stores read on every load")
    replica_a, replica_b = make_store(), make_store()
    record = make_record()
    await replica_a.create(record)
    copy, fresh = await replica_a.load(record.session_id)
    assert not fresh and copy.version == 0  # what replica A wrote itself: no read

    seen_b, fresh_b = await replica_b.load(record.session_id)
    assert fresh_b  # replica B never saw it: a read
    moved = seen_b.advanced(make_record(seed=1).states, 1, None, None)
    await replica_b.commit(moved, expected_version=0)

    stale, fresh = await replica_a.load(record.session_id)
    assert not fresh and stale.version == 0  # A cannot know yet ...
    with pytest.raises(SeqConflict):  # ... but its compare-and-set does
        await replica_a.commit(stale.advanced(make_record(seed=2).states, 1, None, None), expected_version=0)
    again, fresh = await replica_a.load(record.session_id)
    assert fresh and again.version == 1 and states_equal(again.states, moved.states)  # the conflict dropped the copy


async def test_a_copy_of_an_earlier_session_under_the_same_id_never_commits(make_store) -> None:
    """Deleted and created again elsewhere (a /v2 sequence restarted), and stepped to the same version: only the
    commit tag tells the two apart."""
    if not make_store.shared:
        pytest.skip(f"{make_store.kind} stores read on every load")
    replica_a, replica_b = make_store(), make_store()
    record = make_record()
    await replica_a.create(record)
    await replica_a.commit(record.advanced(make_record(seed=1).states, 1, None, None), expected_version=0)

    assert await replica_b.delete(record.session_id)
    again = make_record(record.session_id, seed=2)
    await replica_b.create(again)
    await replica_b.commit(again.advanced(make_record(seed=3).states, 1, None, None), expected_version=0)

    stale, fresh = await replica_a.load(record.session_id)
    assert not fresh and stale.version == 1
    with pytest.raises(SeqConflict):
        await replica_a.commit(stale.advanced(make_record(seed=4).states, 1, None, None), expected_version=1)
    current = await replica_a.get(record.session_id)
    assert current.version == 1 and states_equal(current.states, make_record(seed=3).states)
