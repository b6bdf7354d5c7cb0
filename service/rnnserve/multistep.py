"""Many sessions' steps at once: the data plane's batched step, for the multiplexed stream (WS /v1/streams).

`InferenceService.step` pays per request for the session's lock, store read and commit, validation, the batcher's
hand-off and wake-up, and encoding, which together cost far more than the row it adds to a batched model call
(bench/README.md, "Where the time goes", has the figures). `step_many` takes a whole frame's steps and does the
per-call work once per model: it locks every session (in id order, so two frames never wait on each other in a
cycle), reads each record, checks the inputs of all sessions of one model and timestep count as one array, runs them
as one model call, splits outputs and states back, and commits each session. Only what is per session stays per
session: the store read and commit (each session's compare-and-set) and its reply's bytes.

It answers exactly as `step` would, by sending it every case the common path does not cover: a session with
several steps in the batch (applied in order), a `seq` that is not the session's step (a retry to replay, or a
conflict), a record read from a shared store's cached copy that fails to commit, a group whose inputs fail their
check (so that only the bad step fails, with its own message), a time-major model. Those go through `step` one
by one after the batch, each under its session's lock as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

from rnnserve.inference import InferenceService, StepEncoder, StepRequest, StepResult
from rnnserve.runtime.runner import Runner
from rnnserve.sessions.base import SessionRecord
from rnnserve.signature import ModelSignature
from rnnserve.validation import RawTensors, check_inputs


class RawStep(NamedTuple):
    """One session's step in a batch: its raw little-endian input bytes in the model's layout (single input), the
    shape they have (batch, T, features...), and the step's options. `request()` is the same step for `step`."""

    session_id: str
    data: memoryview | bytes
    shape: tuple[int, ...]
    seq: int | None
    return_state: bool
    digest: Callable[[], bytes] | None = None  # the retry digest, computed when needed (with seq)

    def request(self) -> StepRequest:
        return StepRequest(
            inputs=RawTensors(bytes(self.data), {None: self.shape}),
            seq=self.seq,
            return_state=self.return_state,
            digest=None if self.digest is None else self.digest(),
            binary_reply=True,
        )


T = TypeVar("T")
Outcome = bytes | BaseException
"""A step's encoded reply, or the exception that is its problem."""


class _Ready(NamedTuple):
    at: int
    record: SessionRecord
    fresh: bool
    array: np.ndarray


async def step_many(service: InferenceService, steps: Sequence[RawStep], encode: StepEncoder) -> list[Outcome]:
    """Every step's reply (or its exception), in order; see the module's docstring."""
    outcomes: list[Outcome | None] = [None] * len(steps)
    counts: dict[str, int] = {}
    for item in steps:
        counts[item.session_id] = counts.get(item.session_id, 0) + 1
    slow = [i for i, item in enumerate(steps) if counts[item.session_id] > 1]
    fast = sorted(
        (i for i, item in enumerate(steps) if counts[item.session_id] == 1), key=lambda i: steps[i].session_id
    )
    if fast:
        slow.extend(await _batched(service, steps, fast, outcomes, encode))
    if slow:
        slow.sort()  # each session's steps in their order (the lock queues them first come, first served)
        answers = await asyncio.gather(
            *(service.step(steps[i].session_id, steps[i].request(), encode) for i in slow), return_exceptions=True
        )
        for i, answer in zip(slow, answers, strict=True):
            outcomes[i] = answer
    return outcomes  # type: ignore[return-value]  # every slot is filled


async def _batched(
    service: InferenceService, steps: Sequence[RawStep], fast: list[int], outcomes: list[Outcome | None],
    encode: StepEncoder,
) -> list[int]:  # fmt: skip
    """The common path for `fast` (one step per session, in session id order); returns the steps left to `step`."""
    store = service.store
    left: list[int] = []
    dtypes: dict[str, np.dtype[np.generic]] = {}
    held = []
    reading = 0.0  # the store reads' seconds, for the stage metric
    try:
        groups: dict[tuple[str, tuple[int, ...]], list[_Ready]] = {}
        for i in fast:
            item = steps[i]
            lock = store.lock(item.session_id)
            await lock.__aenter__()
            held.append(lock)
            started = time.perf_counter()
            try:
                record, fresh = await service.load_session(item.session_id)  # another tenant's: as unknown
            except Exception as exc:
                outcomes[i] = exc
                continue
            finally:
                reading += time.perf_counter() - started
            shape = item.shape
            if (item.seq is not None and item.seq != record.step) or shape[0] != record.batch_size:
                left.append(i)  # a replay or a conflict (or a batch that is not the session's): `step` decides
                continue
            array = np.frombuffer(item.data, dtype=_dtype(service, record.model, dtypes)).reshape(shape)
            groups.setdefault((record.model, shape[1:]), []).append(_Ready(i, record, fresh, array))
        _stage_per_model(service, "store_read", reading, groups)
        if groups:
            done = await _each(
                [_group(service, steps, key[0], members, outcomes, encode) for key, members in groups.items()]
            )
            for members, result in zip(groups.values(), done, strict=True):
                if isinstance(result, BaseException):
                    left.extend(m.at for m in members)
                else:
                    left.extend(result)
    finally:
        for lock in reversed(held):
            await lock.__aexit__(None, None, None)
    return left


async def _each(calls: list[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    """`asyncio.gather(*calls, return_exceptions=True)`, without a task for the one call of the common case (one
    model and step length in a batch, within the request batch limit)."""
    if len(calls) == 1:
        try:
            return [await calls[0]]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*calls, return_exceptions=True)


def _dtype(service: InferenceService, model: str, known: dict[str, np.dtype[np.generic]]) -> np.dtype[np.generic]:
    """The wire dtype of a model's (first) input: int64 token ids or float32."""
    dtype = known.get(model)
    if dtype is None:
        sig = service.runnable(model)[1]
        dtype = known[model] = np.dtype("<i8") if sig.inputs[0].dtype == "int64" else np.dtype("<f4")
    return dtype


async def _group(
    service: InferenceService, steps: Sequence[RawStep], model_name: str, members: list[_Ready],
    outcomes: list[Outcome | None], encode: StepEncoder,
) -> list[int]:  # fmt: skip
    """One model call for sessions of one model and timestep count (in chunks of the request batch limit);
    returns the steps left to `step`."""
    runner, sig = service.runnable(model_name)
    if sig.time_major or len(sig.inputs) != 1:
        return [m.at for m in members]
    budget = service.budget
    within = []
    checked: dict[tuple[int, bool], BaseException | None] = {}  # (batch, return_state) -> the budget's verdict
    for member in members:
        key = (member.array.shape[0], steps[member.at].return_state)
        if key not in checked:
            try:
                budget.check(sig, key[0], member.array.shape[1], binary=True, return_state=key[1])
                checked[key] = None
            except Exception as exc:
                checked[key] = exc
        verdict = checked[key]
        if verdict is None:
            within.append(member)
        else:
            outcomes[member.at] = verdict
    members = within
    limit = service.limits.max_batch
    chunks: list[list[_Ready]] = [[]]
    rows = 0
    for member in members:
        b = member.array.shape[0]
        if rows + b > limit and chunks[-1]:
            chunks.append([])
            rows = 0
        chunks[-1].append(member)
        rows += b
    left: list[int] = []
    results = await _each([_call(service, steps, model_name, runner, sig, chunk, outcomes, encode) for chunk in chunks])
    for chunk, result in zip(chunks, results, strict=True):
        if isinstance(result, BaseException):
            left.extend(m.at for m in chunk)
        else:
            left.extend(result)
    return left


async def _call(
    service: InferenceService, steps: Sequence[RawStep], name: str, runner: Runner, sig: ModelSignature,
    chunk: list[_Ready], outcomes: list[Outcome | None], encode: StepEncoder,
) -> list[int]:  # fmt: skip
    """One model call for `chunk`, then each session's commit; raises (so that `step` redoes them one by one)
    when the merged inputs fail their check or the call fails."""
    merged = chunk[0].array if len(chunk) == 1 else np.concatenate([m.array for m in chunk])
    checked = check_inputs(sig, merged, time_major=None, limits=service.limits)
    n_states = len(chunk[0].record.states)
    states = [np.concatenate([m.record.states[k] for m in chunk]) for k in range(n_states)]
    result = await service.run_model(name, runner, checked, states, None)
    timesteps = checked.timesteps
    store = service.store
    metrics = service.metrics
    now = service.clock()
    outputs = result.outputs
    # float32 and C-contiguous once for the chunk: each session's rows, a slice along the batch, are then too
    all_states = [np.ascontiguousarray(s, dtype=np.float32) for s in result.states]
    left: list[int] = []
    offset = 0
    done = 0
    encoding = committing = 0.0  # seconds, for the stage metrics
    for member in chunk:
        record = member.record
        b = record.batch_size
        end = offset + b
        item = steps[member.at]
        own_outputs = {key: value[offset:end] for key, value in outputs.items()}
        own_states = tuple([s[offset:end] for s in all_states])
        offset = end
        new_step = record.step + timesteps
        states_out = list(own_states) if item.return_state else None
        started = time.perf_counter()
        body = encode(StepResult(own_outputs, states_out, session_id=record.session_id, step=new_step))
        encoded = time.perf_counter()
        encoding += encoded - started
        digest, reply = (item.digest(), body) if item.digest is not None else (None, None)
        try:
            await store.commit(
                record.advanced(own_states, timesteps, digest, reply, now), expected_version=record.version
            )
        except Exception as exc:
            if not member.fresh:
                left.append(member.at)  # a stale cached copy: `step` redoes it from a fresh read
            else:
                outcomes[member.at] = exc
            continue
        finally:
            committing += time.perf_counter() - encoded
        outcomes[member.at] = body
        done += 1
    if metrics is not None and done:
        metrics.steps.inc((name,), done)
        metrics.timesteps.inc((name,), done * timesteps)
        metrics.stage(name, "encode", encoding / len(chunk), len(chunk))
        metrics.stage(name, "store_commit", committing / len(chunk), len(chunk))
    return left


def _stage_per_model(
    service: InferenceService, stage: str, seconds: float, groups: dict[tuple[str, tuple[int, ...]], list[_Ready]]
) -> None:
    """`seconds` spent in `stage` for the batch's steps, observed as each step's mean under its model."""
    metrics = service.metrics
    steps = sum(len(members) for members in groups.values())
    if metrics is None or not steps:
        return
    for (model, _), members in groups.items():
        metrics.stage(model, stage, seconds / steps, len(members))
