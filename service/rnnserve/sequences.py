"""Sequences with Triton's sequence batcher semantics, kept as sessions of the session store.

A sequence is named by the client (`sequence_id`: an unsigned 64-bit integer or a string) and lives in the
same store as /v1 sessions, under a deterministic session id, so it expires with the session TTL and survives a
replica's crash when the store is Redis. Per request:

* `start` opens the sequence's session, or resets it when it is still live (a warning is logged: Triton also
  treats a second start as a new sequence); the request's own inputs are then the first step;
* every request steps the session through `InferenceService.step` (same lock, compare-and-set and state rules
  as a /v1 step);
* `end` deletes the session once the request's response is made.

A request without `start` on an unknown, ended or expired sequence fails with `SequenceNotStarted` (400).
Inputs are checked before a start touches the store, so a bad start request leaves a live sequence as it was.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from urllib.parse import quote

from rnnserve.errors import InvalidInput, RnnServeError, SeqConflict, SessionNotFound, SessionsNotSupported
from rnnserve.inference import InferenceService, StepEncoder, StepRequest
from rnnserve.signature import ModelSignature
from rnnserve.tenants import current_tenant
from rnnserve.validation import check_inputs, check_mask

log = logging.getLogger(__name__)

UINT64_MAX = 2**64 - 1
MAX_STRING_ID_CHARS = 256
"""Longest string sequence id (characters), so that ids stay small as store keys and in logs."""

SESSION_PREFIX = "v2"
"""Sequence session ids are `v2:<model>:u:<n>` or `v2:<model>:s:<text>`, model and text percent-encoded: no
field holds a ':', so integer and string ids never collide with each other or across models, and never with
/v1 session ids (URL-safe base64, which has no ':')."""


class SequenceNotStarted(InvalidInput):
    title = "Sequence not started"


@dataclass(frozen=True)
class SequenceControl:
    """A request's sequence parameters. `id` is an int in [1, 2**64 - 1] or a non-empty string (0 and "" mean
    "no sequence" to Triton clients, so they are not sequence ids)."""

    id: int | str
    start: bool = False
    end: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int | str):
            raise InvalidInput(f"sequence_id must be an unsigned 64-bit integer or a string, got {self.id!r}")
        if isinstance(self.id, int) and not 1 <= self.id <= UINT64_MAX:
            raise InvalidInput(f"sequence_id must be in [1, 2**64 - 1], got {self.id}")
        if isinstance(self.id, str) and not 1 <= len(self.id) <= MAX_STRING_ID_CHARS:
            raise InvalidInput(f"a string sequence_id must have 1 to {MAX_STRING_ID_CHARS} characters")

    def describe(self) -> str:
        return f"sequence {self.id!r}" if isinstance(self.id, str) else f"sequence {self.id}"


def session_id_for(model: str, sequence_id: int | str) -> str:
    """The session id that holds a model's sequence."""
    if isinstance(sequence_id, int):
        kind, text = "u", str(sequence_id)
    else:
        kind, text = "s", quote(sequence_id, safe="")
    tenant = current_tenant()  # each tenant's sequence ids are its own: two tenants may both use sequence_id 1
    space = "" if tenant is None else f"{quote(tenant, safe='')}@"
    return f"{SESSION_PREFIX}:{space}{quote(model, safe='')}:{kind}:{text}"


async def step_sequence(
    service: InferenceService,
    signature: ModelSignature,
    control: SequenceControl,
    request: StepRequest,
    encode: StepEncoder,
) -> bytes:
    """Apply one request of a sequence of the model with `signature`; returns the encoded response."""
    if not signature.stream_capable:
        reason = "a Bidirectional layer needs the whole sequence" if signature.bidirectional else "no recurrent state"
        raise SessionsNotSupported(
            f"model {signature.name!r} cannot run sequences ({reason}); send requests without sequence_id"
        )
    session_id = session_id_for(signature.name, control.id)
    if control.start:
        await _start(service, signature, control, session_id, request)
    try:
        body = await service.step(session_id, request, encode)
    except SessionNotFound:
        raise not_started(signature.name, control.id) from None
    if control.end:
        with contextlib.suppress(SessionNotFound):  # ended concurrently: the outcome is the same
            await service.close_session(session_id)
    return body


def not_started(model: str, sequence_id: int | str) -> SequenceNotStarted:
    """The error of a request, without `start`, to a sequence that is not active."""
    return SequenceNotStarted(
        f"{SequenceControl(sequence_id).describe()} of model {model!r} is not active (never started, ended, or "
        "expired after the session TTL): send its first request with sequence_start=true"
    )


async def _start(
    service: InferenceService,
    signature: ModelSignature,
    control: SequenceControl,
    session_id: str,
    request: StepRequest,
) -> None:
    """Open the sequence's session (batch = the request's batch), or reset it if it is live."""
    batch = _checked_batch(service, signature, request)
    try:
        existing = await service.get_session(session_id)
    except SessionNotFound:
        existing = None
    if existing is None:
        await _open(service, signature, control, session_id, batch)
        return
    log.warning(
        "%s of model %r started again at step %d: its state is reset",
        control.describe(),
        signature.name,
        existing.step,
    )
    if existing.batch_size == batch:
        await service.reset_session(session_id)
        return
    with contextlib.suppress(SessionNotFound):
        await service.close_session(session_id)
    await _open(service, signature, control, session_id, batch)


async def _open(
    service: InferenceService, signature: ModelSignature, control: SequenceControl, session_id: str, batch: int
) -> None:
    try:
        await service.open_session(signature.name, batch_size=batch, session_id=session_id)
    except ValueError as exc:  # the stores' "id already exists": another request started it meanwhile
        if isinstance(exc, RnnServeError):
            raise
        raise SeqConflict(
            f"{control.describe()} of model {signature.name!r} was started by a concurrent request; retry the start"
        ) from None


def _checked_batch(service: InferenceService, signature: ModelSignature, request: StepRequest) -> int:
    """Validate a start request's inputs (and mask) before anything changes; its batch is the sequence's."""
    checked = check_inputs(signature, request.inputs, time_major=request.time_major, limits=service.limits)
    if request.mask is not None:
        layout = signature.time_major if request.time_major is None else request.time_major
        check_mask(request.mask, batch=checked.batch, timesteps=checked.timesteps, time_major=layout)
    return checked.batch
