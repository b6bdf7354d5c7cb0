"""`rnnserve.client.AsyncClient`: the same calls with `await`, the same safe retry of a step whose reply was lost,
and the stream as an async iterator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
from app_harness import ServerThread
from client_proxy import Proxy
from conftest import API_KEY

from rnnserve.client import AsyncClient, Client, Retry, SeqConflict, SessionNotFound, Unauthorized

X = np.cos(np.arange(8, dtype=np.float32)).reshape(1, 8, 1)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_predict_and_a_session(server: ServerThread, binary: bool) -> None:
    with Client(server.url) as sync:
        expected = sync.predict("forecaster", X, return_state=True)
    async with AsyncClient(server.url, binary=binary) as client:
        assert await client.healthy() and await client.ready()
        assert "forecaster" in {m.name for m in await client.models()}
        whole = await client.predict("forecaster", X, return_state=True)
        np.testing.assert_array_equal(whole.output, expected.output)
        async with await client.create_session("forecaster") as session:
            first = await session.step(X[:, :3])
            second = await session.step(X[:, 3:], return_state=True)
            assert (first.step, second.step, session.seq) == (3, 8, 8)
            np.testing.assert_allclose(np.concatenate([first.output, second.output], 1), expected.output, atol=1e-6)
            np.testing.assert_allclose(second.states, expected.states, atol=1e-6)  # type: ignore[arg-type]
            other = await client.session(session.id)
            await other.step(X[:, :1])
            with pytest.raises(SeqConflict) as conflict:
                await session.step(X[:, 1:2])  # (the same body and seq as other's would be a retry of it)
            assert conflict.value.step == 9
            assert (await session.refresh()).step == 9 and session.seq == 9
            await session.reset()
            assert session.seq == 0 and (await session.info()).step == 0
        with pytest.raises(SessionNotFound):
            await session.info()


async def test_a_step_retried_after_its_reply_was_lost_applies_once(proxy: Proxy, server: ServerThread) -> None:
    retry = Retry(retries=3, backoff_s=0.01)
    async with (
        AsyncClient(proxy.url, retry=retry) as client,
        AsyncClient(server.url) as direct,
        await client.create_session("forecaster") as session,
    ):
        await session.step(X[:, :4])
        proxy.cut_after_reply(b"/step")
        result = await session.step(X[:, 4:])
        assert proxy.cut == 1 and len(proxy.seen) == 2
        assert result.step == 8 and (await (await direct.session(session.id)).info()).step == 8


async def chunks() -> AsyncIterator[np.ndarray]:
    for i in range(8):
        await asyncio.sleep(0)
        yield X[:, i : i + 1]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_the_stream_as_an_async_iterator(server: ServerThread, binary: bool) -> None:
    async with AsyncClient(server.url, binary=binary) as client:
        expected = (await client.predict("forecaster", X)).output
        async with await client.create_session("forecaster") as session:
            got = [r async for r in session.stream(chunks(), window=4)]
            assert [r.step for r in got] == list(range(1, 9)) and session.seq == 8
            np.testing.assert_allclose(np.concatenate([r.output for r in got], axis=1), expected, atol=1e-5)
            async with session.open_stream() as stream:
                assert (await stream.step(X[:, :2])).step == 10
            # leaving the loop early: aclosing closes the connection at once
            async with contextlib.aclosing(session.stream([X[:, :1]] * 5, window=1)) as results:
                async for result in results:
                    assert result.step == 11
                    break


async def test_the_api_key(keyed_server: ServerThread) -> None:
    async with AsyncClient(keyed_server.url, api_key=API_KEY) as client, AsyncClient(keyed_server.url) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.model("forecaster")
        async with await client.create_session("forecaster") as session:
            assert [r.step async for r in session.stream([X[:, :2], X[:, 2:3]])] == [2, 3]
            session.client = anonymous  # the same session, reached without the key
            with pytest.raises(Unauthorized):
                await session.open_stream().step(X[:, :1])
            session.client = client
