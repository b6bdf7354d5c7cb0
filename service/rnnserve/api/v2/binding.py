"""How a served model looks on /v2, and how an infer request binds to its signature.

* `inputs`: the signature's inputs, by their signature names, datatype FP32 (INT64 for token ids), shape in the
  model's own layout with free dimensions as -1 (`[-1, -1, features]`: batch and time; a model built for a fixed
  batch size, e.g. a stateful Keras model, shows that size);
* `optional_inputs`: `mask`, BOOL `[batch, time]` (`[time, batch]` for a time-major model), false = timestep
  skipped as Keras masking skips it; not offered when the model has an input of that name;
* `outputs`: the signature's outputs, FP32; a request that names no outputs gets these;
* `optional_outputs`: the recurrent states, FP32 `[batch, units]`, named as the signature names them (`lstm/h`,
  `lstm/c`, ...), sent only when a request names them: after a stateless infer the final states, after a
  sequence request the states the sequence holds from then on.

The model has one version, `MODEL_VERSION`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnserve.api.v2.tensors import InferRequest, datatype_of, encode_response
from rnnserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from rnnserve.inference import InferenceService
from rnnserve.runtime.repository import LoadedModel
from rnnserve.runtime.runner import MASK_INPUT
from rnnserve.signature import ModelSignature, TensorInfo

MODEL_VERSION = "1"
PLATFORM = "onnxruntime_onnx"
MASK_DATATYPE = "BOOL"


def ready_model(service: InferenceService, name: str, version: str | None = None) -> LoadedModel:
    """A model that serves (`ModelNotFound` 404, or `ModelNotReady` 503 while loading or after a failure)."""
    model = service.model(name)
    check_version(model, version)
    if model.status != "ready" or model.signature is None:
        raise ModelNotReady(f"model {name!r} is {model.status}: {model.error or 'it is still loading'}")
    return model


def check_version(model: LoadedModel, version: str | None) -> None:
    if version is not None and version != MODEL_VERSION:
        raise ModelNotFound(f"model {model.name!r} has no version {version!r}; it serves version {MODEL_VERSION}")


# ---- metadata -----------------------------------------------------------------------------------------------------


def tensor_metadata(info: TensorInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "datatype": datatype_of(info.dtype),
        "shape": [-1 if d is None else d for d in info.shape],
    }


def model_metadata(signature: ModelSignature) -> dict[str, Any]:
    """`$metadata_model_response`: name, versions, platform, inputs, outputs (plus the optional tensors)."""
    return {
        "name": signature.name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": [tensor_metadata(t) for t in signature.inputs],
        "outputs": [tensor_metadata(t) for t in signature.outputs],
        "optional_inputs": [tensor_metadata(t) for t in _mask_input(signature)],
        "optional_outputs": [tensor_metadata(t) for t in _state_outputs(signature)],
        "sequences": signature.stream_capable,
    }


def model_config(signature: ModelSignature, *, max_batch: int, idle_s: float) -> dict[str, Any]:
    """The parts of a Triton model configuration (`model_config.proto`, as Triton's HTTP `.../config` renders it)
    that describe this model: `input`, `output`, `max_batch_size` and, for a model that takes sequences,
    `sequence_batching` with its implicit states (each state's name as both its input and output name).

    A model whose batch is its leading free dimension shows `max_batch_size` = the server's `max_request_batch` and
    dims without the batch, as Triton shows a batching model; a model built for a fixed batch size, or a
    time-major one, shows `max_batch_size` 0 and its whole shape."""
    batching = not signature.time_major and all(
        t.shape[:1] == (None,) for t in (*signature.inputs, *signature.outputs, *signature.states)
    )

    def dims(info: TensorInfo) -> list[int]:
        shape = info.shape[1:] if batching else info.shape
        return [-1 if d is None else d for d in shape]

    def tensor(info: TensorInfo) -> dict[str, Any]:
        return {"name": info.name, "data_type": "TYPE_" + datatype_of(info.dtype), "dims": dims(info)}

    config: dict[str, Any] = {
        "name": signature.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [int(MODEL_VERSION)]}},
        "max_batch_size": max_batch if batching else 0,
        "input": [{**tensor(t), "format": "FORMAT_NONE"} for t in signature.inputs],
        "output": [tensor(t) for t in signature.outputs],
    }
    if signature.stream_capable:
        config["sequence_batching"] = {
            "max_sequence_idle_microseconds": round(idle_s * 1e6),
            "state": [
                {"input_name": t.name, "output_name": t.name, "data_type": "TYPE_FP32", "dims": dims(t)}
                for t in signature.states
            ],
        }
    return config


def _mask_input(signature: ModelSignature) -> tuple[TensorInfo, ...]:
    if any(t.name == MASK_INPUT for t in signature.inputs):
        return ()
    return (TensorInfo(MASK_INPUT, (None, None), "bool"),)


def _state_outputs(signature: ModelSignature) -> tuple[TensorInfo, ...]:
    """The states, except any whose name an output already has (that name means the output)."""
    outputs = {t.name for t in signature.outputs}
    return tuple(t for t in signature.states if t.name not in outputs)


# ---- binding a request --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectedOutput:
    name: str
    binary: bool
    state: int | None  # index into the states, None for a model output


@dataclass(frozen=True)
class Binding:
    """A request bound to a signature: inputs by signature name, the mask, and the outputs to send back."""

    inputs: dict[str, np.ndarray]
    mask: np.ndarray | None
    outputs: tuple[SelectedOutput, ...]

    @property
    def wants_states(self) -> bool:
        return any(o.state is not None for o in self.outputs)

    def render(
        self,
        model_name: str,
        outputs: Mapping[str, np.ndarray],
        states: Sequence[np.ndarray] | None,
        request_id: str | None,
        parameters: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, int | None]:
        """The response body (and the JSON header's length when any output is binary)."""
        tensors = []
        for output in self.outputs:
            if output.state is None:
                array = outputs[output.name]
            else:
                assert states is not None, "states were requested from the data plane"
                array = states[output.state]
            tensors.append((output.name, array, output.binary))
        return encode_response(model_name, MODEL_VERSION, tensors, request_id, parameters)


def bind(signature: ModelSignature, request: InferRequest) -> Binding:
    """Check a request's input names and datatypes and its requested outputs against the signature. Shapes,
    values and sizes are the data plane's checks (`rnnserve.validation`)."""
    inputs = {t.name: t for t in signature.inputs}
    optional = {t.name: t for t in signature.state_inputs}  # Keras Inputs that feed initial_state, sent by name
    mask_inputs = _mask_input(signature)
    arrays: dict[str, np.ndarray] = {}
    mask = None
    for name, array in request.inputs.items():
        datatype = request.datatypes[name]
        if name in inputs or name in optional:
            _check_datatype(signature, name, datatype, datatype_of((inputs.get(name) or optional[name]).dtype))
            arrays[name] = array
        elif mask_inputs and name == MASK_INPUT:
            _check_datatype(signature, name, datatype, MASK_DATATYPE)
            mask = array
        else:
            known = [*inputs, *optional, *(t.name for t in mask_inputs)]
            raise InvalidInput(f"model {signature.name!r} has no input {name!r}; its inputs are {known}")
    missing = [name for name in inputs if name not in arrays]
    if missing:
        raise InvalidInput(f"model {signature.name!r} needs input(s) {missing}")
    return Binding(arrays, mask, _select_outputs(signature, request))


def _check_datatype(signature: ModelSignature, name: str, got: str, expected: str) -> None:
    if got != expected:
        raise InvalidInput(f"input {name!r} of model {signature.name!r} has datatype {expected}, got {got}")


def selectable_outputs(signature: ModelSignature) -> dict[str, int | None]:
    """Every name a request may ask for, with what it names: a model output (None), or a state (its index in the
    signature's states; a state whose name an output has is not selectable, that name means the output)."""
    names: dict[str, int | None] = {t.name: None for t in signature.outputs}
    for t in _state_outputs(signature):
        names[t.name] = signature.states.index(t)
    return names


def _select_outputs(signature: ModelSignature, request: InferRequest) -> tuple[SelectedOutput, ...]:
    if request.outputs is None:
        return tuple(SelectedOutput(t.name, request.output_is_binary(None), None) for t in signature.outputs)
    names = selectable_outputs(signature)
    selected = []
    for requested in request.outputs:
        if requested.name not in names:
            known = list(names)
            raise InvalidInput(f"model {signature.name!r} has no output {requested.name!r}; its outputs are {known}")
        binary = request.output_is_binary(requested)
        selected.append(SelectedOutput(requested.name, binary, names[requested.name]))
    return tuple(selected)
