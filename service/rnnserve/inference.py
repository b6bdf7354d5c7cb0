"""The data plane: stateless predict and stateful sessions, whatever protocol the request came in on.

Protocol adapters (/v1 JSON routes, the /v1 WebSocket stream, /v2) decode their tensors into numpy arrays, build a
`PredictRequest` or `StepRequest`, call `InferenceService`, and render what it returns. They never touch the
model repository, the session store or the executor.

A step runs under the session's lock, so the steps of one session apply one at a time in arrival order:

1. load the record (`SessionNotFound` when unknown or expired);
2. check `seq`: an exact retry of the previous request (same `seq`, same body digest) gets the cached response
   (cached only for requests that carry `seq`, the only ones a retry can match);
   any other mismatch raises `SeqConflict` carrying the current step;
3. validate the inputs against the model signature;
4. run the model through the executor;
5. commit the new record (compare-and-set on its version).

State is written only in (5), so a request that fails anywhere before leaves the session as it was. A shared
store may hand (1) its cached copy of the record; `step` then redoes from a fresh read whatever the copy did not
carry through to a successful commit.

`rnnserve.multistep.step_many` runs many sessions' steps as one model call, the same five stages built from the
public parts here: `runnable`, `load_session`, `run_model`, with `store`, `limits`, `budget` and `clock`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rnnserve import mc_dropout, penalties
from rnnserve.batching.base import StepExecutor
from rnnserve.errors import (
    InvalidArgument,
    InvalidInput,
    ReplyNotKept,
    RnnServeError,
    SeqConflict,
    SessionNotFound,
    SessionsNotSupported,
    StoreUnavailable,
)
from rnnserve.limits import Budget, LargeCalls
from rnnserve.mc_dropout import DropoutRequest
from rnnserve.metrics import Metrics
from rnnserve.runtime.repository import LoadedModel, ModelRepository
from rnnserve.runtime.runner import Runner, RunResult
from rnnserve.sessions.base import SessionPage, SessionRecord, SessionStore, SessionSummary, state_bytes
from rnnserve.settings import Settings
from rnnserve.signature import ModelSignature
from rnnserve.spec import ModelSpec
from rnnserve.tenants import QuotaExceeded, current_tenant, tenants_for
from rnnserve.validation import (
    CheckedInputs,
    Limits,
    Tensors,
    check_batch_size,
    check_inputs,
    check_mask,
    check_states,
    zero_states,
)

if TYPE_CHECKING:
    from rnnserve.layers.model import ReferenceModel

log = logging.getLogger(__name__)

SESSION_ID_BYTES = 24  # 192 random bits


# The per-request values are NamedTuples, not frozen dataclasses: just as immutable, and built several times per
# step, where a frozen dataclass's __init__ costs several times as much (bench/README.md, "Where the time goes").


class PredictRequest(NamedTuple):
    """A whole-sequence call. `time_major` is the request's layout (None = the model's own layout)."""

    inputs: Tensors
    mask: np.ndarray | None = None
    initial_state: Sequence[np.ndarray] | None = None
    time_major: bool | None = None
    return_state: bool = False
    return_losses: bool = False  # Keras' model.losses after this call (weight and activity penalties)
    binary_reply: bool = False  # the reply goes out as raw bytes (its size budget counts 4 bytes a float, not 16)
    dropout: DropoutRequest | None = None  # Monte-Carlo dropout samples (rnnserve.mc_dropout)


class StepRequest(NamedTuple):
    """One chunk of a stream. `seq` is the step the client believes the session is at; `digest` identifies the
    request body (same body, same digest), so that a retry of the previous request can be recognised: it is needed
    only with `seq`, since only such requests can be retried (`_check_seq`)."""

    inputs: Tensors
    mask: np.ndarray | None = None
    seq: int | None = None
    time_major: bool | None = None
    return_state: bool = False
    digest: bytes | None = None
    binary_reply: bool = False  # as `PredictRequest.binary_reply`
    dropout: DropoutRequest | None = None  # a what-if: samples from the session's state, which stays as it was


class InferenceResult(NamedTuple):
    """Outputs by name in the signature's order and the request's layout; states when asked for."""

    outputs: dict[str, np.ndarray]
    states: list[np.ndarray] | None
    losses: dict[str, Any] | None = None  # with return_losses (`rnnserve.penalties.call_losses`)
    dropout: dict[str, Any] | None = None  # with dropout: how the samples were drawn (and their std)


class StepResult(NamedTuple):
    """A step's outputs and states (as `InferenceResult`), the session and its step after this call."""

    outputs: dict[str, np.ndarray]
    states: list[np.ndarray] | None
    session_id: str
    step: int
    dropout: dict[str, Any] | None = None  # as `InferenceResult.dropout`


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    model: str
    batch_size: int
    step: int
    expires_at: float  # unix time
    states: tuple[np.ndarray, ...]

    @property
    def expires_at_iso(self) -> str:
        return iso8601(self.expires_at)


StepEncoder = Callable[[StepResult], bytes]
"""Renders a step's response; the bytes are cached in the session to answer a retry identically."""


def iso8601(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, tz=timezone.utc).isoformat(timespec="milliseconds")


class InferenceService:
    def __init__(
        self,
        repository: ModelRepository,
        store: SessionStore,
        executor: StepExecutor,
        settings: Settings,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: unix time for session expiry (a test injects one, with the memory store's, to skip ahead)."""
        self.repository = repository
        self.store = store
        self.executor = executor
        self.limits = Limits(max_timesteps=settings.max_timesteps, max_batch=settings.max_request_batch)
        self.budget = Budget(settings.max_work, settings.max_reply_bytes)
        self.max_retry_reply_bytes = settings.max_retry_reply_bytes
        self.tenants = tenants_for(settings)
        self.large_calls = LargeCalls(settings.large_work, settings.large_work_threads)
        self.default_ttl_s = settings.default_ttl_s
        self.max_ttl_s = settings.max_ttl_s
        self.metrics = metrics
        self.clock = clock

    # ---- models ------------------------------------------------------------------------------------------------------

    def models(self) -> list[LoadedModel]:
        return self.repository.list()

    def model(self, name: str) -> LoadedModel:
        """A model in any state (for discovery); `ModelNotFound` if unknown."""
        for model in self.repository.list():
            if model.name == name:
                return model
        return self.repository.get(name)  # raises ModelNotFound (or ModelNotReady while the folder is scanned)

    @property
    def models_ready(self) -> bool:
        return self.repository.ready

    async def store_ready(self) -> bool:
        try:
            await self.store.ping()
        except Exception:
            log.warning("session store does not answer", exc_info=True)
            return False
        return True

    async def session_count(self) -> int:
        return await self.store.count()

    async def aclose(self) -> None:
        """Stop the threads of large calls (the lifespan closes the executor and the store)."""
        await self.large_calls.aclose()

    # ---- stateless ---------------------------------------------------------------------------------------------------

    async def predict(self, model_name: str, request: PredictRequest) -> InferenceResult:
        model = self.repository.get(model_name)
        runner, sig = _ready(model)
        checked = check_inputs(
            sig, request.inputs, time_major=request.time_major, limits=self.limits, state_inputs=True
        )
        self.budget.check(
            sig, checked.batch, checked.timesteps, binary=request.binary_reply, return_state=request.return_state
        )
        mask = self._mask(sig, request.mask, request.time_major, checked)
        states = checked.states  # set by the model's state inputs sent by name, as Keras' predict([x, h0])
        if request.initial_state is not None:
            if states is not None:
                raise InvalidInput(
                    f"the request sets the initial states twice: as initial_state and as inputs "
                    f"{[i.name for i in sig.state_inputs]}; send one of them"
                )
            states = check_states(sig, request.initial_state, batch=checked.batch)
        if request.dropout is not None:
            return await self._mc_predict(model, sig, checked, states, mask, request)
        result = await self.run_model(model.name, runner, checked, states, mask)
        if self.metrics is not None:
            self.metrics.predictions.labels(model.name).inc()
        answer = self._result(sig, result, request.time_major, request.return_state)
        if request.return_losses:
            losses = await asyncio.to_thread(call_losses, model, checked.feeds, states, mask)
            answer = answer._replace(losses=losses)
        return answer

    # ---- sessions ----------------------------------------------------------------------------------------------------

    async def open_session(
        self,
        model_name: str,
        *,
        batch_size: int | None = None,
        initial_state: Sequence[np.ndarray] | None = None,
        ttl_s: float | None = None,
        session_id: str | None = None,
    ) -> SessionInfo:
        """Open a session; `session_id` None picks a random unguessable id (a caller-chosen id, e.g. a /v2
        sequence's, must not exist yet)."""
        model = self.repository.get(model_name)
        runner, sig = _ready(model)
        _require_streamable(sig, runner)
        batch = batch_size if batch_size is not None else (sig.batch_size or 1)
        check_batch_size(sig, batch, self.limits)
        ttl = self._ttl(ttl_s)
        states = zero_states(sig, batch) if initial_state is None else check_states(sig, initial_state, batch=batch)
        owner = current_tenant()
        if owner is not None and self.tenants is not None:
            await self._check_quota(owner, batch, states)
        now = self.clock()
        record = SessionRecord(
            session_id=session_id if session_id is not None else secrets.token_urlsafe(SESSION_ID_BYTES),
            model=model.name,
            batch_size=batch,
            states=tuple(states),
            ttl_s=ttl,
            expires_at=now + ttl,
            created_at=now,
            owner=owner,
        )
        await self.store.create(record)
        if self.metrics is not None:
            self.metrics.sessions_created.inc()
        return _info(record)

    async def get_session(self, session_id: str) -> SessionInfo:
        return _info(await self._get(session_id))

    async def list_sessions(
        self, *, after: str | None = None, limit: int = 100, model: str | None = None, owner: str | None = None
    ) -> SessionPage:
        """A page of live /v1 sessions in id order (see `SessionStore.scan`); /v2 sequences, which share the store
        under ids with a ':', are left out, so every id listed answers on /v1."""
        tenant = current_tenant()
        if tenant is not None:  # a tenant sees its own sessions only
            owner = tenant
        shown: list[SessionSummary] = []
        cursor = after
        while True:
            page = await self.store.scan(after=cursor, limit=limit - len(shown), model=model, owner=owner)
            shown.extend(s for s in page.sessions if ":" not in s.session_id)
            cursor = page.next_cursor
            if cursor is None or len(shown) >= limit:
                return SessionPage(shown, None if cursor is None else shown[-1].session_id)

    async def step(self, session_id: str, request: StepRequest, encode: StepEncoder) -> bytes:
        """Apply one chunk to a session; returns the encoded response (the cached one for an exact retry).

        The record comes from `store.load`: with a shared store, maybe this process's copy of the session, which
        another replica may have moved on since. Such a copy is trusted only as far as the commit's compare-and-set
        on its version succeeds. Any other outcome (a replay, a seq conflict, an invalid input, a failed commit) is
        decided again from a fresh read, so every answer is the one a store read on every step would give."""
        if request.dropout is not None:
            return await self._what_if(session_id, request, request.dropout, encode)
        store = self.store
        metrics = self.metrics
        async with store.lock(session_id):
            started = time.perf_counter()
            record, fresh = await store.load(session_id)
            if record.owner != current_tenant():
                raise _not_found(session_id)
            if metrics is not None:
                metrics.stage(record.model, "store_read", time.perf_counter() - started)
            if not fresh:
                try:
                    return await self._step(record, request, encode, copy=True)
                except StoreUnavailable:
                    raise
                except RnnServeError:
                    pass  # decided again below, from the store's own record
                if metrics is not None:
                    metrics.session_rereads.inc()
                record = await self._get(session_id)
            return await self._step(record, request, encode, copy=False)

    async def _step(self, record: SessionRecord, request: StepRequest, encode: StepEncoder, *, copy: bool) -> bytes:
        """One step from `record` under the session's lock; `copy`: the record may be stale (see `step`)."""
        replay = _check_seq(record, request)
        if replay is not None:
            if copy:
                raise _Unconfirmed("a retry matched a cached copy of the session")
            if self.metrics is not None:
                self.metrics.replays.inc()
            return replay
        session_id = record.session_id
        model = self.repository.get(record.model)
        runner, sig = _ready(model)
        checked = check_inputs(
            sig, request.inputs, time_major=request.time_major, limits=self.limits, batch=record.batch_size
        )
        self.budget.check(
            sig, checked.batch, checked.timesteps, binary=request.binary_reply, return_state=request.return_state
        )
        mask = self._mask(sig, request.mask, request.time_major, checked)
        result = await self.run_model(model.name, runner, checked, record.states, mask, key=session_id)
        outputs, states_out = self._outputs(sig, result, request.time_major, request.return_state)
        new_step = record.step + checked.timesteps
        metrics = self.metrics
        started = time.perf_counter()
        body = encode(StepResult(outputs, states_out, session_id=session_id, step=new_step))
        encoded = time.perf_counter()
        states = tuple([np.ascontiguousarray(s, dtype=np.float32) for s in result.states])
        # Only a request that names its `seq` can be retried (`_check_seq`): keep the reply for those alone, so that
        # streams without seq do not store a copy of every reply with their session.
        # A reply past max_retry_reply_bytes is not kept: its digest is, so that a retry is told why it cannot be
        # replayed (409 reply-not-kept) instead of being taken for a conflict.
        digest, reply = (request.digest, body) if request.seq is not None else (None, None)
        if reply is not None and len(reply) > self.max_retry_reply_bytes:
            reply = None
        await self.store.commit(
            record.advanced(states, checked.timesteps, digest, reply, self.clock()), expected_version=record.version
        )
        if metrics is not None:
            metrics.stage(model.name, "encode", encoded - started)
            metrics.stage(model.name, "store_commit", time.perf_counter() - encoded)
            metrics.step_done(model.name, checked.timesteps)
        return body

    async def reset_session(
        self, session_id: str, states: Sequence[np.ndarray] | None = None, layers: Sequence[str] | None = None
    ) -> SessionInfo:
        """Keras `reset_states()` (zeros), or with `states` the states assigned to those values; step back to 0.

        `layers` (Keras layer names, as the signature's states name them): only those layers' states are reset,
        as Keras' `model.layers[i].reset_states()` resets one layer; `states` then holds only theirs, in signature
        order. An unknown layer name raises `InvalidInput` naming the known ones, before anything changes."""
        async with self.store.lock(session_id):
            record = await self._get(session_id)
            sig = self._session_signature(record)
            new_states = reset_states(sig, record.states, record.batch_size, states, layers)
            reset = record.reset(new_states, self.clock())
            await self.store.commit(reset, expected_version=record.version)
        return _info(reset)

    async def close_session(self, session_id: str) -> None:
        async with self.store.lock(session_id):
            await self._get(session_id)  # SessionNotFound for an unknown or expired id
            await self.store.delete(session_id)
        if self.metrics is not None:
            self.metrics.sessions_deleted.inc()

    # ---- Monte-Carlo dropout (rnnserve.mc_dropout) -------------------------------------------------------------------

    async def _mc_predict(
        self,
        model: LoadedModel,
        sig: ModelSignature,
        checked: CheckedInputs,
        states: Sequence[np.ndarray] | None,
        mask: np.ndarray | None,
        request: PredictRequest,
    ) -> InferenceResult:
        assert request.dropout is not None
        outputs, states_out, info = await asyncio.to_thread(
            _mc_answer, model, sig, checked, states, mask, request.dropout, request.time_major, request.return_state
        )
        if self.metrics is not None:
            self.metrics.predictions.labels(model.name).inc()
        return InferenceResult(outputs, states_out, dropout=info)

    async def _what_if(
        self, session_id: str, request: StepRequest, dropout: DropoutRequest, encode: StepEncoder
    ) -> bytes:
        """A step with dropout: the samples continue from the session's state, which, like its step, stays as it
        was (nothing is committed; `seq`, when given, must be the session's step)."""
        async with self.store.lock(session_id):
            record = await self._get(session_id)
            if request.seq is not None and request.seq != record.step:
                raise SeqConflict(
                    f"seq {request.seq} does not match session {session_id!r}, which is at step {record.step}",
                    step=record.step,
                )
            model = self.repository.get(record.model)
            _, sig = _ready(model)
            checked = check_inputs(
                sig, request.inputs, time_major=request.time_major, limits=self.limits, batch=record.batch_size
            )
            mask = self._mask(sig, request.mask, request.time_major, checked)
            outputs, states_out, info = await asyncio.to_thread(
                _mc_answer, model, sig, checked, record.states, mask, dropout, request.time_major, request.return_state
            )
        return encode(StepResult(outputs, states_out, session_id=session_id, step=record.step, dropout=info))

    # ---- the data plane's parts (rnnserve.multistep composes them into a batched step) ---------------------------

    def runnable(self, model_name: str) -> tuple[Runner, ModelSignature]:
        """The runner and signature of a model that can run now: `ModelNotFound` for an unknown name,
        `ModelNotReady` while it loads or after its load failed."""
        return _ready(self.repository.get(model_name))

    async def load_session(self, session_id: str) -> tuple[SessionRecord, bool]:
        """The session's record as `store.load` gives it, with `fresh`: False when it is this process's cached copy,
        which another replica may have moved on since (trusted only as far as its commit's compare-and-set on the
        version succeeds; see `step`). Called under the session's lock. `SessionNotFound` for an unknown or expired
        id, and for another tenant's session (as unknown, on every route)."""
        record, fresh = await self.store.load(session_id)
        if record.owner != current_tenant():
            raise _not_found(session_id)
        return record, fresh

    # ---- helpers -----------------------------------------------------------------------------------------------------

    async def _get(self, session_id: str) -> SessionRecord:
        """The session's record, if it is the current tenant's (`rnnserve.tenants`); else, as for an unknown id,
        `SessionNotFound`: another tenant's session answers 404 on every route."""
        record = await self.store.get(session_id)
        if record.owner != current_tenant():
            raise _not_found(session_id)
        return record

    async def _check_quota(self, owner: str, batch: int, states: Sequence[np.ndarray]) -> None:
        """`QuotaExceeded` when one more session of `batch` rows would pass the tenant's quota (its live sessions and
        their states' bytes, as the store counts them: `SessionStore.usage`)."""
        assert self.tenants is not None
        quota = self.tenants.quota(owner)
        sessions, held = await self.tenant_usage(owner)
        if quota.sessions is not None and sessions + 1 > quota.sessions:
            raise QuotaExceeded(
                f"tenant {owner!r} holds {sessions} sessions, its quota (sessions); delete finished sessions or "
                "wait for idle ones to expire",
                limit=quota.sessions,
                needed=sessions + 1,
            )
        wanted = held + state_bytes(states)
        if quota.state_bytes is not None and wanted > quota.state_bytes:
            raise QuotaExceeded(
                f"this session's states would bring tenant {owner!r} to {wanted} bytes of state; its quota "
                f"(state_bytes) is {quota.state_bytes}: delete sessions or open one with a smaller batch_size",
                limit=quota.state_bytes,
                needed=wanted,
            )

    async def tenant_usage(self, owner: str) -> tuple[int, int]:
        """(live sessions, bytes of their states) of a tenant, /v2 sequences included (the store's counters)."""
        return await self.store.usage(owner)

    def _session_signature(self, record: SessionRecord) -> ModelSignature:
        return _ready(self.repository.get(record.model))[1]

    def _ttl(self, ttl_s: float | None) -> float:
        if ttl_s is None:
            return self.default_ttl_s
        if not 0 < ttl_s <= self.max_ttl_s:
            raise InvalidInput(f"ttl_s must be in (0, {self.max_ttl_s:g}] seconds, got {ttl_s:g}")
        return float(ttl_s)

    @staticmethod
    def _mask(
        sig: ModelSignature, mask: np.ndarray | None, time_major: bool | None, checked: CheckedInputs
    ) -> np.ndarray | None:
        if mask is None:
            return None
        layout = sig.time_major if time_major is None else time_major
        return check_mask(mask, batch=checked.batch, timesteps=checked.timesteps, time_major=layout)

    async def run_model(
        self,
        name: str,
        runner: Runner,
        checked: CheckedInputs,
        states: Sequence[np.ndarray] | None,
        mask: np.ndarray | None,
        key: str | None = None,
    ) -> RunResult:
        """One call of model `name` (its `runner`, from `runnable`) on inputs already checked, from `states` (None:
        zeros), through the step executor (a large call, by `large_work`, on its own threads instead); `key` names
        the session, for an executor that keeps per-session order. An input the runtime rejects raises
        `InvalidInput`; any other failure of the model, `RnnServeError` (logged)."""
        # a large call runs outside the executor (whose batcher runs one call of a model at a time)
        executor = self.large_calls if self.large_calls.takes(checked.batch * checked.timesteps) else self.executor
        try:
            return await executor.run(runner, checked.feeds, states, mask, key)
        except RnnServeError:
            raise
        except Exception as exc:
            if _is_input_error(exc):
                raise InvalidInput(f"model {name!r} rejected the input: {exc}") from exc
            log.exception("model %r failed", name)
            raise RnnServeError(f"model {name!r} failed: {type(exc).__name__}") from exc

    @classmethod
    def _result(
        cls, sig: ModelSignature, result: RunResult, time_major: bool | None, return_state: bool
    ) -> InferenceResult:
        return InferenceResult(*cls._outputs(sig, result, time_major, return_state))

    @staticmethod
    def _outputs(
        sig: ModelSignature, result: RunResult, time_major: bool | None, return_state: bool
    ) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None]:
        """Outputs in the request's layout (the runner's own dict when no axes move), and states when asked."""
        if time_major is not None and time_major != sig.time_major:
            outputs = {info.name: _to_layout(result.outputs[info.name], True) for info in sig.outputs}
        else:
            outputs = result.outputs  # already in signature order (the Runner contract)
        states = [np.asarray(s, dtype=np.float32) for s in result.states] if return_state else None
        return outputs, states


def reset_states(
    sig: ModelSignature,
    current: Sequence[np.ndarray],
    batch: int,
    states: Sequence[np.ndarray] | None,
    layers: Sequence[str] | None,
) -> tuple[np.ndarray, ...]:
    """The states after a reset of every state (`layers` None) or of the named layers' states only: zeros, or
    `states` (one per reset state, in signature order)."""
    if layers is None:
        return tuple(zero_states(sig, batch) if states is None else check_states(sig, states, batch=batch))
    known = sig.state_layers
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise InvalidInput(f"unknown layer(s) {unknown} in layers: the layers with states are {list(known)}")
    chosen = set(layers)
    picked = replace(sig, states=tuple(s for s in sig.states if (s.layer or s.name) in chosen))
    values = zero_states(picked, batch) if states is None else check_states(picked, states, batch=batch)
    replaced = dict(zip((s.name for s in picked.states), values, strict=True))
    return tuple(replaced.get(s.name, old) for s, old in zip(sig.states, current, strict=True))


def model_spec(model: LoadedModel) -> ModelSpec | None:
    """The spec a model's runner was built from (None for a runner without one)."""
    return getattr(model.runner, "spec", None)


def weight_report(model: LoadedModel) -> dict[str, Any] | None:
    """`{"penalties": ..., "constraints": ...}` of a model's weights (`rnnserve.penalties`), computed once per
    loaded model; None for a model not loaded or a runner without its spec."""
    cached = model.extra.get("weight_report")
    if cached is None:
        spec = model_spec(model)
        if spec is None:
            return None
        cached = model.extra["weight_report"] = {
            "penalties": penalties.weight_penalties(spec),
            "constraints": penalties.constraint_report(spec),
        }
    return cached  # type: ignore[return-value]


def call_losses(
    model: LoadedModel, feeds: Mapping[str, np.ndarray], states: Sequence[np.ndarray] | None, mask: np.ndarray | None
) -> dict[str, Any]:
    """Keras' `model.losses` after `model(x)` on these inputs: the numpy reference runs the call once more, to see
    every layer's outputs (onnxruntime gives only the model's)."""
    spec = model_spec(model)
    report = weight_report(model)
    if spec is None or report is None:
        raise InvalidInput(f"model {model.name!r} cannot report losses: its runner keeps no model description")
    reference = _reference(model, spec)
    try:
        regularizers = penalties.activity_regularizers(spec)
    except InvalidArgument as exc:
        raise InvalidInput(f"model {model.name!r} cannot report losses: {exc}") from exc
    outputs = reference.run_layers(feeds, states, mask)[1] if regularizers else {}
    return penalties.call_losses(spec, outputs, report["penalties"])


def _reference(model: LoadedModel, spec: ModelSpec) -> ReferenceModel:
    """The model's numpy reference, built once per loaded model (losses run on it, and MC dropout for a runner
    other than onnxruntime's)."""
    from rnnserve.layers.model import ReferenceModel

    reference = model.extra.get("reference")
    if reference is None:
        reference = model.extra["reference"] = ReferenceModel(spec)
    assert isinstance(reference, ReferenceModel)
    return reference


def _mc_answer(
    model: LoadedModel,
    sig: ModelSignature,
    checked: CheckedInputs,
    states: Sequence[np.ndarray] | None,
    mask: np.ndarray | None,
    dropout: DropoutRequest,
    time_major: bool | None,
    return_state: bool,
) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None, dict[str, Any]]:
    """`dropout.samples` training-time calls, answered as the request asks: on onnxruntime (the model's Monte-Carlo
    dropout graph, built on the first such request), or on the numpy reference for a runner that is not an
    `OrtModel`."""
    from rnnserve.runtime.ort_model import OrtModel

    runner = model.runner
    if isinstance(runner, OrtModel):
        samples = mc_dropout.run_samples_ort(runner, checked.feeds, states, mask, dropout)
    else:
        spec = model_spec(model)
        if spec is None:
            raise InvalidInput(f"model {model.name!r} cannot run dropout: its runner keeps no model description")
        samples = mc_dropout.run_samples(_reference(model, spec), checked.feeds, states, mask, dropout)
    swap = time_major is not None and time_major != sig.time_major
    return mc_dropout.answer(samples, dropout, swap, return_state)


def _ready(model: LoadedModel) -> tuple[Runner, ModelSignature]:
    assert model.runner is not None and model.signature is not None, f"model {model.name!r} is not ready"
    return model.runner, model.signature


class _Unconfirmed(RnnServeError):
    """An answer read from a cached copy of a session that only a fresh read may give (never reaches a client)."""


def _require_streamable(sig: ModelSignature, runner: Runner) -> None:
    """Sessions carry state chunk by chunk: refused when a layer's kind may not be streamed (it mixes timesteps,
    e.g. reads the sequence from the end) or the model has no state."""
    from rnnserve.kinds import stream_refusal

    spec = getattr(runner, "spec", None)
    refusal = stream_refusal(spec) if spec is not None else None
    if refusal is None and sig.bidirectional:  # a runner without its spec: the signature's flag
        refusal = "has a layer that needs the whole sequence"
    if refusal is not None:
        raise SessionsNotSupported(
            f"model {sig.name!r} {refusal}; use POST /v1/models/{{model}}/predict on whole sequences"
        )
    if not sig.states:
        raise SessionsNotSupported(f"model {sig.name!r} has no recurrent state to carry between steps")


def _check_seq(record: SessionRecord, request: StepRequest) -> bytes | None:
    """The cached response for an exact retry, None to go ahead; `SeqConflict` for any other mismatch."""
    if request.seq is None or request.seq == record.step:
        return None
    is_retry = request.seq == record.prev_step and request.digest is not None and request.digest == record.last_digest
    if is_retry:
        if record.last_response is None:
            raise ReplyNotKept(
                f"this is a retry of session {record.session_id!r}'s last step, which was applied (the session is at "
                f"step {record.step}), but its reply was too large to keep (max_retry_reply_bytes): it cannot be "
                "sent again; read the session's state with GET, or reset it",
                step=record.step,
            )
        return record.last_response
    raise SeqConflict(
        f"seq {request.seq} does not match session {record.session_id!r}, which is at step {record.step}",
        step=record.step,
    )


def _to_layout(array: np.ndarray, swap: bool) -> np.ndarray:
    """Sequence outputs `(batch, time, ...)` <-> `(time, batch, ...)`; per-sequence outputs have no time axis."""
    if swap and array.ndim >= 3:
        return np.ascontiguousarray(array.swapaxes(0, 1))
    return array


def _is_input_error(exc: Exception) -> bool:
    """onnxruntime's INVALID_ARGUMENT (e.g. a token id beyond the embedding), without importing onnxruntime here."""
    return type(exc).__name__ == "InvalidArgument" and "onnxruntime" in type(exc).__module__


def _info(record: SessionRecord) -> SessionInfo:
    return SessionInfo(
        session_id=record.session_id,
        model=record.model,
        batch_size=record.batch_size,
        step=record.step,
        expires_at=record.expires_at,
        states=record.states,
    )


def _not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(f"no session {session_id!r} (never created, deleted or expired)")
