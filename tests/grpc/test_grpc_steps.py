"""`StreamSteps` in process, on the /v2 tests' models: which stream requests are plain steps, and that a batch of
them answers exactly as the per-request path (`rnnserve.grpc.infer.infer`) answers each, responses and errors
alike, in one model call per model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpc_client import request_of
from v2.v2_models import FEATURES

from rnnserve.batching.base import open_executor
from rnnserve.errors import RnnServeError
from rnnserve.grpc.infer import infer
from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.steps import PlainStep, StreamSteps
from rnnserve.inference import InferenceService
from rnnserve.runtime.repository import ModelRepository
from rnnserve.sessions.factory import open_store
from rnnserve.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

Parameters = dict[str, tuple[str, Any]]


@pytest.fixture
async def service(models_dir: Path) -> AsyncIterator[InferenceService]:
    settings = Settings(models=models_dir, serve_partial=True, large_work=64)
    repository = ModelRepository(models_dir)
    await repository.load_all()
    store = open_store(settings)
    executor = open_executor(settings)
    yield InferenceService(repository, store, executor, settings)
    await executor.aclose()
    await store.aclose()


def step(
    sequence_id: int | str,
    x: np.ndarray,
    *,
    model: str = "gru",
    outputs: tuple[str, ...] = (),
    typed: bool = False,
    request_id: str = "",
    **parameters: tuple[str, Any],
) -> pb.ModelInferRequest:
    kind = "string_param" if isinstance(sequence_id, str) else "int64_param"
    arrays = {"ids" if model == "tokens" else "x": x}
    every: Parameters = {"sequence_id": (kind, sequence_id), **parameters}
    return request_of(model, arrays, typed=typed, outputs=outputs, parameters=every, request_id=request_id)


def start(sequence_id: int | str, x: np.ndarray, **options: Any) -> pb.ModelInferRequest:
    return step(sequence_id, x, sequence_start=("bool_param", True), **options)


def features(seed: int, batch: int = 1, time: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, time, FEATURES)).astype(np.float32)


def tokens(seed: int, time: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 10, size=(1, time)).astype(np.int64)


async def test_which_requests_are_plain_steps(service: InferenceService) -> None:
    steps = StreamSteps(service)
    x = features(0)
    plain: dict[str, pb.ModelInferRequest] = {
        "int id": step(7, x),
        "string id": step("seven", x),
        "uint64 id": request_of("gru", {"x": x}, typed=False, parameters={"sequence_id": ("uint64_param", 2**64 - 1)}),
        "start and end false": step(7, x, sequence_start=("bool_param", False), sequence_end=("bool_param", False)),
        "other parameters": step(7, x, priority=("int64_param", 3)),
        "version 1": step(7, x),
        "every output named": step(7, x, model="lstm", outputs=("lstm", "lstm/h", "lstm/c")),
        "token ids": step(7, tokens(0), model="tokens"),
    }
    plain["version 1"].model_version = "1"
    mask = step(7, x)
    mask.inputs.add(name="mask", datatype="BOOL", shape=(1, 1))
    mask.raw_input_contents.append(b"\x01")
    short = step(7, x)
    short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
    other_version = step(7, x)
    other_version.model_version = "2"
    not_plain: dict[str, pb.ModelInferRequest] = {
        "start": start(7, x),
        "end": step(7, x, sequence_end=("bool_param", True)),
        "start as an int": step(7, x, sequence_start=("int64_param", 1)),
        "no sequence": request_of("gru", {"x": x}, typed=False),
        "sequence 0": step(0, x),
        "empty string id": step("", x),
        "string id too long": step("s" * 257, x),
        "negative id": step(-3, x),
        "typed contents": step(7, x, typed=True),
        "a mask": mask,
        "raw contents of the wrong size": short,
        "wrong datatype": step(7, x.astype(np.float64)),
        "wrong rank": step(7, x[0]),
        "unknown output": step(7, x, outputs=("nope",)),
        "an output twice": step(7, x, outputs=("dense", "dense")),
        "other version": other_version,
        "unknown model": step(7, x, model="nope"),
        "a model that failed to load": step(7, x, model="broken"),
        "a model without sequences": step(7, x, model="bidi"),
        "a large step": step(7, features(0, batch=2, time=40)),
    }
    for what, request in plain.items():
        assert isinstance(steps.prepare(request), PlainStep), what
    for what, request in not_plain.items():
        assert steps.prepare(request) is None, what
    prepared = steps.prepare(plain["every output named"])
    assert prepared is not None and prepared.step.return_state


async def test_a_batch_answers_as_the_per_request_path_does(
    service: InferenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twin sequences get the same inputs: one steps through `infer`, one in a batch; their responses are equal but
    for the sequence id, and the batch makes one model call per model."""
    cases: list[tuple[str, Callable[[int], np.ndarray], tuple[str, ...]]] = [
        ("gru", lambda seed: features(seed), ()),
        ("gru", lambda seed: features(seed), ("dense",)),
        ("gru", lambda seed: features(seed, batch=2, time=3), ("dense", "gru/h")),
        ("lstm", lambda seed: features(seed, time=2), ("lstm/c", "lstm")),
        ("tokens", lambda seed: tokens(seed), ()),
    ]
    requests = []
    for index, (model, make, outputs) in enumerate(cases):
        for sequence_id in (f"batched-{index}", f"alone-{index}"):
            await infer(service, start(sequence_id, make(index), model=model))
        requests.append((model, make(100 + index), outputs, index))
    steps = StreamSteps(service)
    calls: list[str] = []
    run_model = service.run_model

    async def counted(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await run_model(name, *args, **kwargs)

    monkeypatch.setattr(service, "run_model", counted)
    prepared = []
    for model, x, outputs, index in requests:
        plain = steps.prepare(step(f"batched-{index}", x, model=model, outputs=outputs, request_id=f"r{index}"))
        assert plain is not None
        prepared.append(plain)
    answers = await steps.run(prepared)
    assert sorted(calls) == ["gru", "gru", "lstm", "tokens"]  # one per model and step length
    for (model, x, outputs, index), answer in zip(requests, answers, strict=True):
        assert isinstance(answer, pb.ModelStreamInferResponse) and not answer.error_message
        alone = await infer(service, step(f"alone-{index}", x, model=model, outputs=outputs, request_id=f"r{index}"))
        alone.parameters["sequence_id"].string_param = f"batched-{index}"
        assert answer.infer_response.SerializeToString(deterministic=True) == alone.SerializeToString(
            deterministic=True
        )


async def test_errors_in_a_batch_are_the_per_request_paths_and_spare_the_others(service: InferenceService) -> None:
    x = features(1)
    for sequence_id in ("good", "nan", "wide", "twin-nan", "twin-wide"):
        await infer(service, start(sequence_id, x))
    bad = {
        "never started": step("never", x),
        "nan": step("nan", np.full_like(x, np.nan)),
        "wide": step("wide", features(2, batch=2)),  # the sequence has a batch of 1
    }
    twins = {"never started": step("never-twin", x), "nan": step("twin-nan", np.full_like(x, np.nan))}
    twins["wide"] = step("twin-wide", features(2, batch=2))
    steps = StreamSteps(service)
    prepared = [steps.prepare(request) for request in (step("good", x), *bad.values())]
    assert all(isinstance(p, PlainStep) for p in prepared)
    good, *failed = await steps.run([p for p in prepared if p is not None])
    assert isinstance(good, pb.ModelStreamInferResponse)
    assert good.infer_response.parameters["sequence_step"].int64_param == 2
    says = {"never started": "is not active", "nan": "NaN", "wide": "batch"}
    for (what, twin), error in zip(twins.items(), failed, strict=True):
        with pytest.raises(RnnServeError) as caught:
            await infer(service, twin)
        assert type(error) is type(caught.value), what
        expected = str(caught.value).replace("twin-", "").replace("never-twin", "never")
        assert str(error) == expected and says[what] in expected, (what, str(error))
    # the failed steps left their sequences as they were
    for sequence_id in ("nan", "wide"):
        answer = await infer(service, step(sequence_id, x))
        assert answer.parameters["sequence_step"].int64_param == 2
