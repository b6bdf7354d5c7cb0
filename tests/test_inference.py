"""The data plane alone: `InferenceService` on the memory store, the direct executor and the numpy reference, with
no server and an injected clock (so TTL tests skip ahead instead of sleeping)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from rnnserve.batching.direct import DirectExecutor
from rnnserve.errors import InvalidInput, SeqConflict, SessionNotFound, TooManySessions
from rnnserve.inference import InferenceService, PredictRequest, StepRequest, StepResult
from rnnserve.layers.model import ReferenceModel
from rnnserve.modeling import clear_session, keras_model_sequential, layer_dense, layer_gru, set_random_seed
from rnnserve.runtime.repository import ModelRepository
from rnnserve.sessions.memory import MemorySessionStore
from rnnserve.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

FEATURES = 3
MODEL = "gru"


class Clock:
    """Unix time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def gru_model() -> ReferenceModel:
    clear_session()
    set_random_seed(3)
    model = keras_model_sequential(input_shape=(None, FEATURES), name=MODEL)
    layer_gru(model, 8, return_sequences=True)
    layer_dense(model, 2)
    return ReferenceModel(model.to_spec())  # type: ignore[attr-defined]


def encode(result: StepResult) -> bytes:
    """A response body: the outputs' bytes, then the step (what the protocol adapters' encoders stand for)."""
    return b"".join(np.ascontiguousarray(v).tobytes() for v in result.outputs.values()) + str(result.step).encode()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def service(clock: Clock, tmp_path: Path) -> AsyncIterator[InferenceService]:
    settings = Settings(models=tmp_path, default_ttl_s=60.0, max_sessions=3)
    repository = ModelRepository(tmp_path)
    repository.add(MODEL, gru_model())
    store = MemorySessionStore(max_sessions=settings.max_sessions, clock=clock)
    executor = DirectExecutor(threads=1)
    yield InferenceService(repository, store, executor, settings, clock=clock)
    await store.aclose()
    await executor.aclose()


def chunk(rng: np.random.Generator, timesteps: int) -> dict[str, np.ndarray]:
    return {"input_layer": rng.standard_normal((1, timesteps, FEATURES)).astype(np.float32)}


async def test_chunks_streamed_through_a_session_equal_one_predict(service: InferenceService) -> None:
    rng = np.random.default_rng(0)
    chunks = [chunk(rng, t) for t in (1, 4, 2)]
    info = await service.open_session(MODEL)
    bodies = [await service.step(info.session_id, StepRequest(c), encode) for c in chunks]

    whole = {"input_layer": np.concatenate([c["input_layer"] for c in chunks], axis=1)}
    expected = await service.predict(MODEL, PredictRequest(whole))
    last = np.asarray(expected.outputs[next(iter(expected.outputs))], np.float32)[:, 5:]
    assert bodies[-1].endswith(b"7")
    streamed = np.frombuffer(bodies[-1][: last.nbytes], np.float32).reshape(last.shape)
    assert np.all(np.abs(streamed - last) <= 1e-5 + 1e-5 * np.abs(last))  # states cross chunks as float32
    assert (await service.get_session(info.session_id)).step == 7


async def test_a_retry_with_seq_replays_and_any_other_stale_seq_conflicts(service: InferenceService) -> None:
    rng = np.random.default_rng(1)
    info = await service.open_session(MODEL)
    first = StepRequest(chunk(rng, 2), seq=0, digest=b"first")
    body = await service.step(info.session_id, first, encode)

    assert await service.step(info.session_id, first, encode) == body  # the same request again: the same reply
    with pytest.raises(SeqConflict) as conflict:
        await service.step(info.session_id, StepRequest(chunk(rng, 1), seq=0, digest=b"other"), encode)
    assert conflict.value.extra["step"] == 2
    assert (await service.get_session(info.session_id)).step == 2  # nothing applied twice


async def test_bad_input_changes_nothing(service: InferenceService) -> None:
    info = await service.open_session(MODEL)
    before = await service.get_session(info.session_id)
    with pytest.raises(InvalidInput):
        await service.step(info.session_id, StepRequest({"input_layer": np.zeros((1, 2, 5), np.float32)}), encode)
    after = await service.get_session(info.session_id)
    assert after.step == 0 and all(np.array_equal(a, b) for a, b in zip(after.states, before.states, strict=True))


async def test_a_session_expires_after_its_ttl_of_idle_time_and_each_use_renews_it(
    service: InferenceService, clock: Clock
) -> None:
    rng = np.random.default_rng(2)
    info = await service.open_session(MODEL, ttl_s=10)
    assert info.expires_at == clock.now + 10
    clock.now += 9
    await service.step(info.session_id, StepRequest(chunk(rng, 1)), encode)  # a use renews the TTL
    clock.now += 9
    assert (await service.get_session(info.session_id)).expires_at == clock.now + 10
    clock.now += 10
    with pytest.raises(SessionNotFound):
        await service.get_session(info.session_id)


async def test_expired_sessions_make_room_under_the_cap(service: InferenceService, clock: Clock) -> None:
    for _ in range(3):
        await service.open_session(MODEL, ttl_s=5)
    with pytest.raises(TooManySessions):
        await service.open_session(MODEL)
    clock.now += 5
    assert (await service.open_session(MODEL)).expires_at == clock.now + 60
    assert await service.session_count() == 1


async def test_reset_returns_to_zero_states_and_step_zero(service: InferenceService) -> None:
    rng = np.random.default_rng(3)
    info = await service.open_session(MODEL)
    first = await service.step(info.session_id, StepRequest(chunk(rng, 3)), encode)
    await service.reset_session(info.session_id)
    x = chunk(np.random.default_rng(3), 3)
    assert await service.step(info.session_id, StepRequest(x), encode) == first  # as if it had just been opened
