"""Plain sequence steps of a `ModelStreamInfer` stream, many at once: the steps that are ready together go to the
data plane's batched step (`rnnserve.multistep.step_many`, which serves the multiplexed WebSocket too), one model
call per model, instead of one `InferenceService.step` each.

A request is a plain step when it continues a sequence (`sequence_id` set, `sequence_start` and `sequence_end` not
true), carries its one input as `raw_input_contents` with the datatype and rank of the model's one input, asks for
outputs the model has (or none: every output), and is small (no more rows x timesteps than `large_work`, and within
the reply budget). `StreamSteps.prepare` tells it apart without raising: anything else (a start or an end, a
stateless request, typed contents, a mask, a request that would fail its decoding or binding, a model that runs no
sequences or is time-major, ...) is left to the per-request path (`rnnserve.grpc.infer`), which answers it, or
fails it with its own message. A plain step gets exactly the response, or the error, that path would give it: the
same response message (`rnnserve.grpc.tensors.encode_response`), `SequenceNotStarted` for a sequence that is not
active, and the data plane's own checks (`step_many` sends any step its common path does not cover through `step`).

Per-model facts (the input's name, datatype and rank, the selection of outputs a request names, the budget's
verdict on a step's size) are worked out once and kept while the model's signature stays the same, and so are the
sequences' session ids. Each step is counted in the request metrics (`observe`) as the per-request path counts it,
its seconds from its turn (`prepare`, once its sequence's previous request is answered) to its answer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from rnnserve.api.v2.binding import MODEL_VERSION, SelectedOutput, selectable_outputs
from rnnserve.api.v2.tensors import datatype_of
from rnnserve.errors import RnnServeError, SessionNotFound
from rnnserve.grpc.infer import selected
from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.tensors import Parameters, encode_response
from rnnserve.inference import InferenceService, StepResult
from rnnserve.multistep import RawStep, step_many
from rnnserve.sequences import MAX_STRING_ID_CHARS, not_started, session_id_for
from rnnserve.signature import ModelSignature
from rnnserve.tenants import current_tenant

Observe = Callable[[int, float], None]
"""A step's outcome (an HTTP status: 200, or its problem's) and its seconds, for the request metrics."""

_ITEMSIZE = {"FP32": 4, "INT64": 8}
"""The datatypes a plain step's input may have (`step_many` reads float32 or int64 inputs), and their sizes."""
_SESSION_IDS = 65536
"""Session ids remembered (per tenant, model and sequence id) before the memory starts afresh."""
_CACHED = 256
"""At most this many output selections, and step sizes, are kept per model (a stream's requests repeat a few)."""


class PlainStep(NamedTuple):
    """One plain step, ready for `StreamSteps.run`: the request, what answering it needs, and when it was taken up
    (`time.perf_counter()`, for its latency)."""

    request: pb.ModelInferRequest
    model: str
    sequence_id: int | str
    outputs: tuple[SelectedOutput, ...]
    step: RawStep
    since: float


@dataclass
class _Model:
    """What plain steps of one model need, for one signature of it."""

    signature: ModelSignature
    input: str
    datatype: str
    itemsize: int
    rank: int
    every_output: tuple[SelectedOutput, ...]  # what a request that names no outputs gets
    outputs: dict[tuple[str, ...], tuple[SelectedOutput, ...] | None] = field(default_factory=dict)
    fits: dict[tuple[int, int, bool], bool] = field(default_factory=dict)  # (rows, timesteps, states) -> in budget


class StreamSteps:
    """Plain steps for `rnnserve.grpc.stream.serve_stream`: `prepare` one request (None: not a plain step), `run`
    many (at most one of each sequence: the stream runs a sequence's requests one after another)."""

    def __init__(self, service: InferenceService, observe: Observe | None = None) -> None:
        self.service = service
        self.observe = observe
        self._models: dict[str, _Model | None] = {}  # None: the model takes no plain steps
        self._session_ids: dict[tuple[str | None, str, int | str], str] = {}

    def prepare(self, request: pb.ModelInferRequest) -> PlainStep | None:
        """The request as a plain step, or None (see the module's docstring)."""
        since = time.perf_counter()
        sequence_id = _plain_sequence(request.parameters)
        if sequence_id is None or request.model_version not in ("", MODEL_VERSION):
            return None
        inputs = request.inputs
        contents = request.raw_input_contents
        if len(inputs) != 1 or len(contents) != 1:
            return None
        model = self._model(request.model_name)
        if model is None:
            return None
        tensor = inputs[0]
        if tensor.name != model.input or tensor.datatype != model.datatype or len(tensor.parameters):
            return None
        shape = tuple(tensor.shape)
        if len(shape) != model.rank or min(shape) < 0 or tensor.HasField("contents"):
            return None
        data = contents[0]
        if len(data) != math.prod(shape) * model.itemsize:
            return None
        outputs = self._outputs(model, request)
        if outputs is None:
            return None
        return_state = outputs is not model.every_output and any(output.state is not None for output in outputs)
        if not self._fits(model, shape[0], shape[1], return_state):
            return None
        name = model.signature.name
        raw = RawStep(self._session_id(name, sequence_id), data, shape, None, return_state)
        return PlainStep(request, name, sequence_id, outputs, raw, since)

    def _session_id(self, model: str, sequence_id: int | str) -> str:
        """`session_id_for`, remembered: a stream steps the same sequences over and over."""
        key = (current_tenant(), model, sequence_id)
        session_id = self._session_ids.get(key)
        if session_id is None:
            if len(self._session_ids) >= _SESSION_IDS:
                self._session_ids.clear()
            session_id = self._session_ids[key] = session_id_for(model, sequence_id)
        return session_id

    async def run(self, steps: Sequence[PlainStep]) -> list[pb.ModelStreamInferResponse | BaseException]:
        """Each step's response, or the exception that fails it, in order."""
        by_session = {plain.step.session_id: plain for plain in steps}
        assert len(by_session) == len(steps), "one step of each sequence at a time"
        made: dict[str, pb.ModelStreamInferResponse] = {}

        def encode(result: StepResult) -> bytes:
            # The response is made here, where the result is; `step_many` hands back bytes (for the WebSocket), which
            # the gRPC stream does not need, so the step's response is kept aside for it.
            plain = by_session[result.session_id]
            made[result.session_id] = response = pb.ModelStreamInferResponse()
            encode_response(
                plain.model,
                MODEL_VERSION,
                selected(plain.outputs, result.outputs, result.states),
                raw=True,
                request_id=plain.request.id,
                parameters={"sequence_id": plain.sequence_id, "sequence_step": result.step},
                into=response.infer_response,
            )
            return b""

        outcomes = await step_many(self.service, [plain.step for plain in steps], encode)
        answers: list[pb.ModelStreamInferResponse | BaseException] = []
        for plain, outcome in zip(steps, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, SessionNotFound):  # as `step_sequence` says it
                    outcome = not_started(plain.model, plain.sequence_id)
                answers.append(outcome)
            else:
                answers.append(made[plain.step.session_id])
        if self.observe is not None:
            now = time.perf_counter()
            for plain, answer in zip(steps, answers, strict=True):
                self.observe(_status(answer), now - plain.since)
        return answers

    def _model(self, name: str) -> _Model | None:
        try:
            signature = self.service.repository.get(name).signature
        except RnnServeError:  # unknown, or not ready: the per-request path says so
            return None
        if signature is None:
            return None
        model = self._models.get(name)
        if model is None or model.signature is not signature:
            model = self._models[name] = _model_of(signature)
        return model

    @staticmethod
    def _outputs(model: _Model, request: pb.ModelInferRequest) -> tuple[SelectedOutput, ...] | None:
        """The outputs the request names (every model output when it names none), or None when the per-request
        path is to judge them (an unknown name, a name twice, a parameter)."""
        requested = request.outputs
        if not requested:
            return model.every_output
        names = tuple(output.name for output in requested)
        outputs = model.outputs.get(names, ())
        if outputs == ():
            outputs = _select(model.signature, names)
            if len(model.outputs) < _CACHED:
                model.outputs[names] = outputs
        if outputs is not None and any(len(output.parameters) for output in requested):
            return None
        return outputs

    def _fits(self, model: _Model, rows: int, timesteps: int, return_state: bool) -> bool:
        """Whether a step of this size is small enough for the batch: not a large call (`large_work`), and within
        the reply budget as the per-request path counts it."""
        if self.service.large_calls.takes(rows * timesteps):
            return False
        key = (rows, timesteps, return_state)
        fits = model.fits.get(key)
        if fits is None:
            try:
                self.service.budget.check(model.signature, rows, timesteps, binary=False, return_state=return_state)
                fits = True
            except RnnServeError:
                fits = False
            if len(model.fits) < _CACHED:
                model.fits[key] = fits
        return fits


def _plain_sequence(parameters: Parameters) -> int | str | None:
    """The request's `sequence_id` when its sequence parameters make it a plain step (a valid id, no start, no
    end), else None. (A parameter with no value is as if absent, as `parameter_values` reads it.)"""
    if "sequence_id" not in parameters:
        return None
    parameter = parameters["sequence_id"]
    choice = parameter.WhichOneof("parameter_choice")
    sequence_id: int | str
    if choice == "int64_param" or choice == "uint64_param":
        number: int = getattr(parameter, choice)
        if number < 1:
            return None
        sequence_id = number
    elif choice == "string_param":
        sequence_id = parameter.string_param
        if not 1 <= len(sequence_id) <= MAX_STRING_ID_CHARS:
            return None
    else:
        return None
    for flag in ("sequence_start", "sequence_end"):
        if flag in parameters:
            parameter = parameters[flag]
            choice = parameter.WhichOneof("parameter_choice")
            if choice is not None and (choice != "bool_param" or parameter.bool_param):
                return None
    return sequence_id


def _model_of(signature: ModelSignature) -> _Model | None:
    """The plain-step facts of a model, or None for a model whose steps the batched step does not take."""
    if not signature.stream_capable or signature.time_major or len(signature.inputs) != 1:
        return None
    (info,) = signature.inputs
    if info.dtype not in ("float32", "int64") or len(info.shape) < 2:
        return None
    datatype = datatype_of(info.dtype)
    every_output = tuple(SelectedOutput(output.name, True, None) for output in signature.outputs)
    return _Model(signature, info.name, datatype, _ITEMSIZE[datatype], len(info.shape), every_output)


def _select(signature: ModelSignature, names: tuple[str, ...]) -> tuple[SelectedOutput, ...] | None:
    """The outputs `names` select, as `rnnserve.api.v2.binding.bind` selects them (None: a name it refuses)."""
    selectable = selectable_outputs(signature)
    if len(set(names)) != len(names) or any(name not in selectable for name in names):
        return None
    return tuple(SelectedOutput(name, True, selectable[name]) for name in names)


def _status(answer: pb.ModelStreamInferResponse | BaseException) -> int:
    if isinstance(answer, RnnServeError):
        return int(answer.status)
    return 500 if isinstance(answer, BaseException) else 200
