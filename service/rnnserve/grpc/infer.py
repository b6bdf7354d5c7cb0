"""One `ModelInferRequest` through the data plane, exactly as /v2 HTTP runs an infer request: the request is
bound to the model's signature by the /v2 binding (`rnnserve.api.v2.binding.bind`), its sequence parameters read
by the same rules (`rnnserve.api.v2.infer.sequence_control`: `sequence_id` 0 or "" means no sequence) and a
sequence request applied by `rnnserve.sequences.step_sequence`. Only the tensors' encoding is gRPC's own
(`rnnserve.grpc.tensors`).

A sequence request's response carries the parameters `sequence_id` and `sequence_step` (the timesteps the
sequence has consumed since its start), as over HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnserve.api.v2.binding import MODEL_VERSION, SelectedOutput, bind, ready_model
from rnnserve.api.v2.infer import sequence_control
from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.tensors import decode_request, encode_response
from rnnserve.inference import InferenceService, PredictRequest, StepRequest, StepResult
from rnnserve.sequences import step_sequence


async def infer(service: InferenceService, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    """The response to one request; errors raise (`rnnserve.errors`), for the caller to turn into a status."""
    loaded = ready_model(service, request.model_name, request.model_version or None)
    signature = loaded.signature
    assert signature is not None, "ready_model returns a model with its signature"
    decoded = decode_request(request)
    binding = bind(signature, decoded)
    raw = decoded.binary_output_default
    control = sequence_control(decoded.parameters)
    if control is None:
        predict = PredictRequest(inputs=binding.inputs, mask=binding.mask, return_state=binding.wants_states)
        result = await service.predict(signature.name, predict)
        return encode_response(
            signature.name,
            MODEL_VERSION,
            selected(binding.outputs, result.outputs, result.states),
            raw=raw,
            request_id=decoded.id,
        )
    results: list[StepResult] = []

    def keep(result: StepResult) -> bytes:
        # No `seq` (the protocol has no safe-retry token), so nothing is cached in the session and the response
        # is made from the result once the step is done.
        results.append(result)
        return b""

    step = StepRequest(inputs=binding.inputs, mask=binding.mask, return_state=binding.wants_states)
    await step_sequence(service, signature, control, step, keep)
    (stepped,) = results
    return encode_response(
        signature.name,
        MODEL_VERSION,
        selected(binding.outputs, stepped.outputs, stepped.states),
        raw=raw,
        request_id=decoded.id,
        parameters={"sequence_id": control.id, "sequence_step": stepped.step},
    )


def selected(
    chosen: Sequence[SelectedOutput], outputs: dict[str, np.ndarray], states: Sequence[np.ndarray] | None
) -> list[tuple[str, np.ndarray]]:
    """The tensors the request asked for (`Binding.outputs`), in its order: model outputs, or states (by their
    signature names)."""
    tensors = []
    for output in chosen:
        if output.state is None:
            tensors.append((output.name, outputs[output.name]))
        else:
            assert states is not None, "states were requested from the data plane"
            tensors.append((output.name, states[output.state]))
    return tensors
