"""`SessionStore.scan` on every store (memory, Redis, a Redis Cluster's buckets): id order, pages by cursor,
the model filter, expiry, and no TTL renewed by reading."""

from __future__ import annotations

import asyncio

import pytest
from session_records import make_record

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _all_pages(store, limit: int, **filters) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await store.scan(after=cursor, limit=limit, **filters)
        pages.append([s.session_id for s in page.sessions])
        cursor = page.next_cursor
        if cursor is None:
            return pages


async def test_pages_cover_every_session_once_in_id_order(make_store) -> None:
    store = make_store()
    records = [make_record(f"s{i:02d}", model="gru" if i % 3 == 0 else "lstm") for i in range(23)]
    for record in records:
        await store.create(record)

    pages = await _all_pages(store, limit=5)

    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [sid for page in pages for sid in page] == sorted(r.session_id for r in records)


async def test_a_page_shows_model_step_and_expiry(make_store) -> None:
    store = make_store()
    record = make_record("only", model="gru", batch_size=2, ttl_s=30.0)
    await store.create(record)
    await store.commit(record.advanced(record.states, 7, None, None), expected_version=0)

    page = await store.scan()

    assert page.next_cursor is None
    [shown] = page.sessions
    assert (shown.session_id, shown.model, shown.step, shown.batch_size) == ("only", "gru", 7, 2)
    assert shown.expires_at == pytest.approx(record.expires_at, abs=5)
    assert shown.created_at == pytest.approx(record.created_at)


async def test_the_model_filter_and_an_exact_last_page(make_store) -> None:
    store = make_store()
    for i in range(10):
        await store.create(make_record(f"s{i}", model="gru" if i % 2 else "lstm"))

    assert await _all_pages(store, limit=5, model="gru") == [["s1", "s3", "s5", "s7", "s9"]]
    assert await _all_pages(store, limit=2, model="lstm") == [["s0", "s2"], ["s4", "s6"], ["s8"]]
    assert await _all_pages(store, limit=5, model="none") == [[]]
    # a filter no record matches once tenants exist: records without an owner are shown to no owner
    assert await _all_pages(store, limit=5, owner="tenant-a") == [[]]


async def test_expired_and_deleted_sessions_are_not_listed(make_store) -> None:
    store = make_store()
    await store.create(make_record("short", ttl_s=0.2))
    await store.create(make_record("long"))
    await store.create(make_record("gone"))
    await store.delete("gone")
    await asyncio.sleep(0.4)

    page = await store.scan()

    assert [s.session_id for s in page.sessions] == ["long"]


async def test_listing_renews_no_ttl(make_store) -> None:
    store = make_store()
    await store.create(make_record("brief", ttl_s=0.5))
    for _ in range(4):
        assert [s.session_id for s in (await store.scan()).sessions] in (["brief"], [])
        await asyncio.sleep(0.2)
    assert (await store.scan()).sessions == []


async def test_a_limit_below_one_is_refused(make_store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await make_store().scan(limit=0)


async def test_an_owner_sees_its_own_sessions_past_other_tenants(make_store) -> None:
    store = make_store()
    for i in range(7):  # another tenant's sessions sort first
        await store.create(make_record(f"a{i}", model="gru")._replace(owner="tenant-b"))
    await store.create(make_record("b1", model="gru")._replace(owner="tenant-a"))
    await store.create(make_record("b2", model="lstm")._replace(owner="tenant-a"))
    await store.create(make_record("b3", model="gru"))  # no owner (a server without keys made it)

    assert await _all_pages(store, limit=2, owner="tenant-a") == [["b1", "b2"]]
    assert await _all_pages(store, limit=1, owner="tenant-a", model="gru") == [["b1"]]
    assert await _all_pages(store, limit=5, model="gru", owner="tenant-b") == [
        [f"a{i}" for i in range(5)],
        ["a5", "a6"],
    ]
    everyone = await _all_pages(store, limit=100, model="gru")
    assert everyone == [[*(f"a{i}" for i in range(7)), "b1", "b3"]]
    [b1] = [s for s in (await store.scan(owner="tenant-a")).sessions if s.session_id == "b1"]
    assert b1.model == "gru" and b1.owner == "tenant-a"
