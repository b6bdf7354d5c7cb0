"""The WebSocket stream as an iterator: binary frames (or JSON messages) give what HTTP steps give, in order,
and the session's seq follows; a bad message raises its error and the stream goes on."""

from __future__ import annotations

import numpy as np
import pytest
from app_harness import ServerThread

from rnnserve.client import Client, InvalidInput, Result, SessionNotFound

RNG = np.random.default_rng(3)


def chunks_of(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    edges = np.cumsum([0, *sizes])
    return [x[:, a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]


def http_steps(client: Client, model: str, chunks: list[np.ndarray], **kw: object) -> list[Result]:
    with client.create_session(model, batch_size=len(chunks[0])) as session:
        return [session.step(c, **kw) for c in chunks]  # type: ignore[arg-type]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(
    ("model", "x"),
    [
        ("forecaster", RNG.normal(size=(1, 9, 1)).astype(np.float32)),
        ("orbit", RNG.normal(size=(3, 9, 2)).astype(np.float32)),
        ("chargru", RNG.integers(1, 30, size=(2, 9))),
        ("lstm_state", RNG.normal(size=(2, 9, 3)).astype(np.float32)),
    ],
)
def test_a_stream_gives_what_http_steps_give(server: ServerThread, model: str, x: np.ndarray, binary: bool) -> None:
    chunks = chunks_of(x, [1, 3, 1, 4])
    with Client(server.url, binary=binary) as client:
        expected = http_steps(client, model, chunks, return_state=True)
        with client.create_session(model, batch_size=len(x)) as session:
            with session.open_stream(return_state=True) as stream:
                got = list(stream.map(chunks, window=3))
                assert (stream.codec.shape is not None) == binary  # binary frames when asked for
            assert session.seq == 9 and session.info().step == 9
    assert [r.step for r in got] == [1, 4, 5, 9]
    for mine, theirs in zip(got, expected, strict=True):
        assert list(mine.outputs) == list(theirs.outputs)
        for name in theirs.outputs:
            np.testing.assert_allclose(mine.outputs[name], theirs.outputs[name], atol=1e-6)
        np.testing.assert_allclose(mine.states, theirs.states, atol=1e-6)  # type: ignore[arg-type]


def test_the_iterator_pipelines_a_generator_of_chunks(server: ServerThread) -> None:
    x = RNG.normal(size=(1, 40, 1)).astype(np.float32)
    with Client(server.url) as client, client.create_session("forecaster") as session:
        results = list(session.stream((x[:, i : i + 1] for i in range(40)), window=8))
        whole = client.predict("forecaster", x).output
    assert [r.step for r in results] == list(range(1, 41))
    np.testing.assert_allclose(np.concatenate([r.output for r in results], axis=1), whole, atol=1e-5)


def test_a_masked_or_reshaped_chunk_goes_as_json_on_a_binary_stream(server: ServerThread) -> None:
    x = RNG.normal(size=(1, 4, 1)).astype(np.float32)
    with Client(server.url) as client, client.create_session("forecaster") as session:
        with session.open_stream() as stream:
            assert stream.step(x[:, :2]).step == 2
            assert stream.codec.shape == (1, 2, 1)
            assert stream.step(x[:, 2:], mask=[[True, False]]).step == 4
            with pytest.raises(InvalidInput, match="batch"):
                stream.step(np.zeros((2, 1, 1), dtype=np.float32))  # another batch size: JSON, and refused
            with pytest.raises(InvalidInput):
                stream.step(np.full((1, 1, 1), np.inf, dtype=np.float32))
            assert stream.step(x[:, :1]).step == 5  # the stream goes on; the bad chunks changed nothing
        assert session.info().step == 5


def test_a_stream_on_a_deleted_session(server: ServerThread) -> None:
    with Client(server.url) as client:
        session = client.create_session("forecaster")
        session.delete()
        with pytest.raises(SessionNotFound):
            list(session.stream([np.zeros((1, 1, 1), dtype=np.float32)]))
