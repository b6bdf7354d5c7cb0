"""One /v2 infer request through the data plane: a stateless predict of the whole input, or one request of a
sequence (`parameters.sequence_id`, `sequence_start`, `sequence_end`; see `rnnserve.sequences`).

Triton clients send `sequence_id` 0 (or "") for "no sequence", so those mean a stateless request, and then
`sequence_start` / `sequence_end` must not be true. A sequence request's response carries `parameters`
`sequence_id` and `sequence_step` (the timesteps the sequence has consumed since its start).
"""

from __future__ import annotations

from typing import Any

from rnnserve.api.v2.binding import Binding, bind
from rnnserve.api.v2.tensors import InferRequest
from rnnserve.errors import InvalidInput
from rnnserve.inference import InferenceService, PredictRequest, StepRequest, StepResult
from rnnserve.sequences import SequenceControl, step_sequence
from rnnserve.signature import ModelSignature

Encoded = tuple[bytes, int | None]
"""A response body and, when it carries binary tensors, the length of its JSON header."""


def sequence_control(parameters: dict[str, Any]) -> SequenceControl | None:
    """The request's sequence parameters; None for a request outside any sequence."""
    sequence_id = parameters.get("sequence_id", 0)
    start = _flag(parameters, "sequence_start")
    end = _flag(parameters, "sequence_end")
    if isinstance(sequence_id, bool) or not isinstance(sequence_id, int | str):
        raise InvalidInput(f"sequence_id must be an unsigned 64-bit integer or a string, got {sequence_id!r}")
    if sequence_id == 0 or sequence_id == "":
        if start or end:
            raise InvalidInput("sequence_start and sequence_end need a sequence_id (a non-zero integer or a string)")
        return None
    return SequenceControl(sequence_id, start=start, end=end)


def _flag(parameters: dict[str, Any], key: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"parameters.{key} must be true or false, got {value!r}")
    return value


async def infer(service: InferenceService, signature: ModelSignature, request: InferRequest) -> Encoded:
    binding = bind(signature, request)
    control = sequence_control(request.parameters)
    if control is None:
        return await _stateless(service, signature, binding, request)
    return await _sequence_step(service, signature, binding, request, control)


async def _stateless(
    service: InferenceService, signature: ModelSignature, binding: Binding, request: InferRequest
) -> Encoded:
    predict = PredictRequest(inputs=binding.inputs, mask=binding.mask, return_state=binding.wants_states)
    result = await service.predict(signature.name, predict)
    return binding.render(signature.name, result.outputs, result.states, request.id)


async def _sequence_step(
    service: InferenceService,
    signature: ModelSignature,
    binding: Binding,
    request: InferRequest,
    control: SequenceControl,
) -> Encoded:
    header_lengths: list[int | None] = []

    def encode(result: StepResult) -> bytes:
        parameters = {"sequence_id": control.id, "sequence_step": result.step}
        body, header_length = binding.render(signature.name, result.outputs, result.states, request.id, parameters)
        header_lengths.append(header_length)
        return body

    # No `seq`: the protocol has no safe-retry token, so a step is never answered from the session's cache and
    # `encode` always runs.
    step = StepRequest(inputs=binding.inputs, mask=binding.mask, return_state=binding.wants_states)
    body = await step_sequence(service, signature, control, step, encode)
    assert len(header_lengths) == 1, "a sequence step without seq is always encoded once"
    return body, header_lengths[0]
