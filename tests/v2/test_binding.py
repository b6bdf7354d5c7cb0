"""A signature as /v2 metadata, and requests bound to it (names, datatypes, requested outputs) without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from rnnserve.api.v2.binding import bind, model_metadata
from rnnserve.api.v2.tensors import InferRequest, RequestedOutput
from rnnserve.errors import InvalidInput
from rnnserve.signature import ModelSignature, TensorInfo

LSTM = ModelSignature(
    name="lstm",
    inputs=(TensorInfo("x", (None, None, 3), "float32"),),
    outputs=(TensorInfo("y", (None, None, 4), "float32"),),
    states=(TensorInfo("lstm/h", (None, 4), "float32"), TensorInfo("lstm/c", (None, 4), "float32")),
)
TOKENS_STATEFUL = ModelSignature(
    name="tokens",
    inputs=(TensorInfo("ids", (2, None), "int64"), TensorInfo("mask", (2, None), "int64")),
    outputs=(TensorInfo("y", (2, 3), "float32"), TensorInfo("rnn/h", (2, 3), "float32")),
    states=(TensorInfo("rnn/h", (2, 3), "float32"),),
    stateful=True,
    batch_size=2,
)


def request(datatypes: dict[str, str], outputs: list[RequestedOutput] | None = None, **kw: Any) -> InferRequest:
    inputs = {name: np.zeros((1, 2, 3), dtype=np.float32) for name in datatypes}
    return InferRequest(inputs=inputs, datatypes=datatypes, outputs=outputs, **kw)


def test_metadata_has_batch_and_time_as_minus_one_and_the_optional_tensors() -> None:
    meta = model_metadata(LSTM)
    assert meta["name"] == "lstm" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1, 3]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, -1, 4]}]
    assert meta["optional_inputs"] == [{"name": "mask", "datatype": "BOOL", "shape": [-1, -1]}]
    assert meta["optional_outputs"] == [
        {"name": "lstm/h", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "lstm/c", "datatype": "FP32", "shape": [-1, 4]},
    ]
    assert meta["sequences"] is True
    orjson.dumps(meta)  # plain JSON


def test_metadata_keeps_a_fixed_batch_and_gives_names_to_inputs_and_outputs_first() -> None:
    meta = model_metadata(TOKENS_STATEFUL)
    assert meta["inputs"] == [
        {"name": "ids", "datatype": "INT64", "shape": [2, -1]},
        {"name": "mask", "datatype": "INT64", "shape": [2, -1]},
    ]
    assert meta["optional_inputs"] == []  # the model has its own input called "mask"
    assert meta["optional_outputs"] == []  # "rnn/h" is an output's name: requesting it means the output


def test_bind_takes_inputs_by_name_and_the_mask_apart() -> None:
    x = np.ones((1, 2, 3), dtype=np.float32)
    mask = np.array([[True, False]])
    bound = bind(LSTM, InferRequest({"x": x, "mask": mask}, {"x": "FP32", "mask": "BOOL"}, None))
    assert list(bound.inputs) == ["x"] and bound.inputs["x"] is x and bound.mask is mask
    assert [(o.name, o.binary, o.state) for o in bound.outputs] == [("y", False, None)]
    assert not bound.wants_states


def test_bind_selects_requested_outputs_and_states_with_their_binary_choice() -> None:
    outputs = [RequestedOutput("lstm/c", None), RequestedOutput("y", False)]
    bound = bind(LSTM, request({"x": "FP32"}, outputs, binary_output_default=True))
    assert [(o.name, o.binary, o.state) for o in bound.outputs] == [("lstm/c", True, 1), ("y", False, None)]
    assert bound.wants_states
    y, h, c = np.zeros((1, 2, 4), np.float32), np.ones((1, 4), np.float32), np.full((1, 4), 2, np.float32)
    raw, header_length = bound.render("lstm", {"y": y}, [h, c], None)
    assert header_length is not None
    header = orjson.loads(raw[:header_length])
    assert [o["name"] for o in header["outputs"]] == ["lstm/c", "y"]
    np.testing.assert_array_equal(np.frombuffer(raw[header_length:], dtype="<f4").reshape(1, 4), c)


def test_a_name_that_is_both_output_and_state_means_the_output() -> None:
    bound = bind(
        TOKENS_STATEFUL,
        InferRequest(
            {"ids": np.zeros((2, 1), np.int64), "mask": np.ones((2, 1), np.int64)},
            {"ids": "INT64", "mask": "INT64"},
            [RequestedOutput("rnn/h", None)],
        ),
    )
    assert [(o.name, o.state) for o in bound.outputs] == [("rnn/h", None)]
    assert bound.mask is None and set(bound.inputs) == {"ids", "mask"}


@pytest.mark.parametrize(
    ("datatypes", "outputs", "message"),
    [
        ({"x": "FP64"}, None, "input 'x' of model 'lstm' has datatype FP32, got FP64"),
        ({"x": "FP32", "mask": "INT32"}, None, "input 'mask' of model 'lstm' has datatype BOOL, got INT32"),
        ({"x": "FP32", "z": "FP32"}, None, "has no input 'z'; its inputs are ['x', 'mask']"),
        ({"mask": "BOOL"}, None, "needs input(s) ['x']"),
        ({"x": "FP32"}, [RequestedOutput("nope", None)], "has no output 'nope'; its outputs are ['y', 'lstm/h'"),
    ],
)
def test_bind_refuses_what_the_model_does_not_have(
    datatypes: dict[str, str], outputs: list[RequestedOutput] | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        bind(LSTM, request(datatypes, outputs))
    assert message in caught.value.detail
