"""`rnnserve.client.wire` without a server: what goes as binary and what falls back to JSON, reply decoding, the
stream codec, and error mapping."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from rnnserve.client import errors
from rnnserve.client.wire import ModelInfo, StreamCodec, closed_error, http_result, parse_tensors, tensor_request

FLOATS = ModelInfo.from_json({
    "name": "f", "inputs": [{"name": "x", "shape": [None, None, 2], "dtype": "float32"}],
    "outputs": [{"name": "y", "shape": [None, None, 3], "dtype": "float32"},
                {"name": "h", "shape": [None, 3], "dtype": "float32"}],
    "states": [{"name": "rnn/h", "shape": [None, 3], "dtype": "float32"}],
})  # fmt: skip
TOKENS = ModelInfo.from_json({
    "name": "t", "inputs": [{"name": "ids", "shape": [None, None], "dtype": "int64"}],
    "outputs": [{"name": "y", "shape": [None, 5], "dtype": "float32"}], "states": [],
})  # fmt: skip


def test_binary_bodies_and_their_headers() -> None:
    x = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    body, headers = tensor_request(FLOATS, x, binary=True, seq=7, return_state=True, time_major=False)
    assert body == x.astype("<f4").tobytes()
    assert headers == {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream",
                       "X-Shape": "2,3,2", "X-Seq": "7", "X-Return-State": "true", "X-Time-Major": "false"}  # fmt: skip
    ids, headers = tensor_request(TOKENS, [[1, 2, 3]], binary=True)
    assert ids == np.array([[1, 2, 3]], "<i8").tobytes() and headers["X-Shape"] == "1,3"


@pytest.mark.parametrize(
    ("model", "inputs", "extra"),
    [
        (TOKENS, [[1.5, 2.0]], {}),  # floats for token ids: the server says what is wrong
        (FLOATS, {"nope": np.zeros((1, 1, 2))}, {}),  # an input the model does not have
        (FLOATS, np.zeros((1, 2, 2)), {"mask": [[True, False]]}),  # binary carries no mask
        (FLOATS, np.zeros((1, 2, 2)), {"initial_state": [np.zeros((1, 3))]}),
    ],
)
def test_what_binary_cannot_carry_goes_as_json(model: ModelInfo, inputs: object, extra: dict) -> None:
    body, headers = tensor_request(model, inputs, binary=True, **extra)
    assert headers == {"Content-Type": "application/json", "Accept": "application/octet-stream"}
    assert set(orjson.loads(body)) == {"inputs", *extra}


def test_binary_replies_are_cut_by_x_tensors() -> None:
    y, h, s = (np.random.default_rng(0).normal(size=shape).astype("<f4") for shape in ((2, 1, 3), (2, 3), (2, 3)))
    headers = {"content-type": "application/octet-stream", "x-tensors": "y=2,1,3;h=2,3;states[0]=2,3", "x-step": "4"}
    result = http_result(FLOATS, headers, y.tobytes() + h.tobytes() + s.tobytes())
    assert list(result.outputs) == ["y", "h"] and result.step == 4
    np.testing.assert_array_equal(result.outputs["h"], h)
    np.testing.assert_array_equal(result.states[0], s)  # type: ignore[index]
    with pytest.raises(errors.ClientError, match="bytes"):
        http_result(FLOATS, headers, y.tobytes())
    assert parse_tensors("a:1=1,2;b=") == [("a:1", (1, 2)), ("b", ())]


def test_the_stream_codec_declares_the_first_shape_and_decodes_frames() -> None:
    codec = StreamCodec(FLOATS, binary=True, return_state=True, time_major=None)
    first = np.zeros((2, 3, 2), dtype=np.float32)
    assert codec.query(first, None) == "?shape=2,3,2&return_state=true"
    assert isinstance(codec.encode(first), bytes)
    assert isinstance(codec.encode(np.zeros((1, 1, 2))), str)  # another batch: JSON on the same stream
    assert isinstance(codec.encode(first[:, :1], mask=[[True], [True]]), str)
    y, h, s = np.ones((2, 3, 3), "<f4"), np.full((2, 3), 2, "<f4"), np.full((2, 3), 3, "<f4")
    result = codec.decode(struct.pack("<Q", 9) + y.tobytes() + h.tobytes() + s.tobytes())
    assert result.step == 9 and result.outputs["y"].shape == (2, 3, 3) and result.states[0][0, 0] == 3  # type: ignore[index]
    with pytest.raises(errors.SeqConflict):
        codec.decode('{"type":"https://rnnserve.dev/problems/seq-conflict","status":409,"title":"t","detail":"d"}')
    assert codec.decode('{"outputs":{"y":[[[1,2,3]]],"h":[[1,2,3]]},"step":10}').step == 10 and not codec.pending


def test_a_stream_stays_json_when_binary_cannot_describe_its_replies() -> None:
    free = ModelInfo.from_json({**FLOATS.raw, "outputs": [{"name": "y", "shape": [None, None, None]}]})
    assert StreamCodec(free, binary=True, return_state=False, time_major=None).query(np.zeros((1, 1, 2)), None) == ""
    assert StreamCodec(FLOATS, binary=False, return_state=False, time_major=None).query(np.zeros((1, 1, 2)), None) == ""


def test_error_mapping() -> None:
    assert isinstance(closed_error(4404, "session not found"), errors.SessionNotFound)
    assert isinstance(closed_error(1008, "key"), errors.Unauthorized)
    closed = closed_error(1001, "going away")
    assert isinstance(closed, errors.StreamClosed) and closed.code == 1001
    html = errors.from_response(502, "text/html", b"<h1>Bad gateway</h1>")
    assert type(html) is errors.ApiError and html.status == 502 and html.title == "Bad Gateway"
    v2 = errors.from_response(404, "application/json", b'{"error": "no model"}')
    assert isinstance(v2, errors.NotFound) and v2.detail == "no model"
