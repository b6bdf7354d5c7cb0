"""An unmodified `tritonclient.http` client drives the server: health, metadata, stateless infer, sequences with
integer and string ids, binary tensors, restarts, ends and bad requests."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tritonclient.http as triton
from v2_client import close, infer, inputs_of, raises_error, run_sequence
from v2_models import FEATURES

CHUNKS = (1, 2, 1, 3, 1, 2)  # six requests of different lengths: 10 timesteps


def chunked(x: np.ndarray, lengths: tuple[int, ...] = CHUNKS) -> list[np.ndarray]:
    bounds = np.cumsum((0, *lengths))
    return [x[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def features(rng: np.random.Generator, batch: int = 1, time: int = sum(CHUNKS)) -> np.ndarray:
    return rng.normal(size=(batch, time, FEATURES)).astype(np.float32)


def stateless(client: triton.InferenceServerClient, model: str, x: np.ndarray, output: str) -> np.ndarray:
    return infer(client, model, {"x": x}, outputs=[output]).as_numpy(output)


# ---- health and metadata ------------------------------------------------------------------------------------------


def test_server_is_live_and_ready_and_lists_its_extensions(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "rnnserve" and metadata["version"]
    assert {"sequence", "binary_tensor_data"} <= set(metadata["extensions"])


def test_model_metadata_has_inputs_and_outputs_with_batch_as_minus_one(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("gru")
    assert metadata["name"] == "gru" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1, FEATURES]}]
    assert metadata["outputs"] == [{"name": "dense", "datatype": "FP32", "shape": [-1, -1, 2]}]
    assert metadata["optional_outputs"] == [{"name": "gru/h", "datatype": "FP32", "shape": [-1, 5]}]
    assert client.get_model_metadata("gru", model_version="1") == metadata
    tokens = client.get_model_metadata("tokens")
    assert tokens["inputs"] == [{"name": "ids", "datatype": "INT64", "shape": [-1, -1]}]


def test_models_are_ready_under_their_one_version(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("gru") and client.is_model_ready("gru", "1")
    assert not client.is_model_ready("gru", "2") and not client.is_model_ready("nope")


def test_unknown_models_and_versions_are_404(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    raises_error(lambda: client.get_model_metadata("nope"), 404, contains="no model named 'nope'")
    raises_error(lambda: client.get_model_metadata("gru", model_version="2"), 404, contains="no version '2'")
    x = {"x": features(rng)}
    raises_error(lambda: infer(client, "nope", x), 404, contains="nope")
    raises_error(lambda: infer(client, "gru", x, model_version="3"), 404, contains="serves version 1")
    raises_error(lambda: infer(client, "nope", x, sequence_id=4, sequence_start=True), 404, contains="nope")


# ---- stateless ----------------------------------------------------------------------------------------------------


def test_stateless_infer_json_binary_and_default_outputs_agree(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng, batch=2, time=5)
    as_json = infer(client, "gru", {"x": x}, outputs=["dense"])
    as_binary = infer(client, "gru", {"x": x}, binary=True, outputs=["dense"], binary_outputs=True)
    default = infer(client, "gru", {"x": x})  # no outputs named: every output, as binary
    assert as_json.get_output("dense")["data"] and "data" not in as_binary.get_output("dense")
    y = as_json.as_numpy("dense")
    assert y.shape == (2, 5, 2) and y.dtype == np.float32
    np.testing.assert_array_equal(as_binary.as_numpy("dense"), y)
    np.testing.assert_array_equal(default.as_numpy("dense"), y)
    np.testing.assert_array_equal(infer(client, "gru", {"x": x}, model_version="1").as_numpy("dense"), y)


def test_final_states_are_outputs_on_request(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    x = features(rng, time=4)
    result = infer(client, "lstm", {"x": x}, outputs=["lstm", "lstm/h", "lstm/c"], binary_outputs=True)
    y, h, c = (result.as_numpy(n) for n in ("lstm", "lstm/h", "lstm/c"))
    assert h.shape == c.shape == (1, 4)
    assert close(h, y[:, -1])  # an LSTM's output is its h
    assert result.get_response()["outputs"][0]["name"] == "lstm"


def test_request_id_is_echoed(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    result = infer(client, "gru", {"x": features(rng, time=1)}, request_id="req-42")
    assert result.get_response()["id"] == "req-42"


def test_int64_token_ids_and_gzip_bodies(client: triton.InferenceServerClient) -> None:
    ids = np.array([[1, 5, 0, 9], [3, 3, 3, 0]], dtype=np.int64)
    plain = infer(client, "tokens", {"ids": ids}, outputs=["simple_rnn"]).as_numpy("simple_rnn")
    for algorithm in ("gzip", "deflate"):
        packed = client.infer(
            "tokens", inputs_of({"ids": ids}, binary=True), request_compression_algorithm=algorithm
        ).as_numpy("simple_rnn")
        np.testing.assert_array_equal(packed, plain)
    raises_error(lambda: infer(client, "tokens", {"ids": ids.astype(np.float32)}), 400, contains="INT64, got FP32")


def test_mask_is_an_optional_bool_input(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    x = features(rng, time=4)
    mask = np.array([[True, True, False, True]])
    masked = infer(client, "gru", {"x": x, "mask": mask}, outputs=["gru/h"]).as_numpy("gru/h")
    skipped = infer(client, "gru", {"x": x[:, [0, 1, 3]]}, outputs=["gru/h"]).as_numpy("gru/h")
    assert close(masked, skipped)  # a masked timestep leaves the state as it was


# ---- sequences ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sequence_id", [1, 2**63 + 12345, 2**64 - 1, "ünïcode:id/with spaces", "7"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_six_step_sequence_equals_the_stateless_infer_of_the_whole_input(
    client: triton.InferenceServerClient, rng: np.random.Generator, sequence_id: int | str, binary: bool
) -> None:
    x = features(rng)
    parts = run_sequence(client, "gru", chunked(x), sequence_id, output="dense", binary=binary)
    assert [p.shape[1] for p in parts] == list(CHUNKS)
    assert close(np.concatenate(parts, axis=1), stateless(client, "gru", x, "dense"))


def test_binary_and_json_sequences_give_identical_numbers(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng)
    as_json = run_sequence(client, "lstm", chunked(x), "json-run", output="lstm")
    as_binary = run_sequence(client, "lstm", chunked(x), "binary-run", output="lstm", binary=True)
    for a, b in zip(as_json, as_binary, strict=True):
        np.testing.assert_array_equal(a, b)


def test_interleaved_sequences_and_equal_int_and_string_ids_stay_apart(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    xs: dict[int | str, np.ndarray] = {9: features(rng), "9": features(rng), 2**64 - 2: features(rng)}
    chunks = {sid: chunked(x) for sid, x in xs.items()}
    got: dict[int | str, list[np.ndarray]] = {sid: [] for sid in xs}
    for i in range(len(CHUNKS)):
        for sid in xs:
            flags = {"sequence_start": i == 0, "sequence_end": i == len(CHUNKS) - 1}
            result = infer(client, "gru", {"x": chunks[sid][i]}, outputs=["dense"], sequence_id=sid, **flags)
            got[sid].append(result.as_numpy("dense"))
    for sid, x in xs.items():
        assert close(np.concatenate(got[sid], axis=1), stateless(client, "gru", x, "dense")), sid


def test_a_sequence_reports_its_step_and_id(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    x = features(rng, time=3)
    first = infer(client, "gru", {"x": x}, sequence_id=2**64 - 3, sequence_start=True)
    second = infer(client, "gru", {"x": x[:, :1]}, sequence_id=2**64 - 3, sequence_end=True)
    assert first.get_response()["parameters"] == {"sequence_id": 2**64 - 3, "sequence_step": 3}
    assert second.get_response()["parameters"]["sequence_step"] == 4


def test_states_after_a_sequence_request_are_the_sequence_state(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng, time=5)
    infer(client, "lstm", {"x": x[:, :2]}, sequence_id="states", sequence_start=True)
    result = infer(client, "lstm", {"x": x[:, 2:]}, outputs=["lstm/h", "lstm/c"], sequence_id="states")
    whole = infer(client, "lstm", {"x": x}, outputs=["lstm/h", "lstm/c"])
    assert close(result.as_numpy("lstm/h"), whole.as_numpy("lstm/h"))
    assert close(result.as_numpy("lstm/c"), whole.as_numpy("lstm/c"))


def test_a_second_start_restarts_the_sequence_with_a_warning(
    client: triton.InferenceServerClient, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = features(rng, time=3), features(rng)
    for i, chunk in enumerate(chunked(old, (1, 2))):
        infer(client, "gru", {"x": chunk}, sequence_id=77, sequence_start=i == 0)
    with caplog.at_level(logging.WARNING, logger="rnnserve.sequences"):
        parts = run_sequence(client, "gru", chunked(new), 77, output="dense")
    assert close(np.concatenate(parts, axis=1), stateless(client, "gru", new, "dense"))
    assert any("sequence 77 of model 'gru' started again at step 3" in r.getMessage() for r in caplog.records)


def test_a_restart_with_another_batch_size_starts_afresh(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    infer(client, "gru", {"x": features(rng, batch=1, time=2)}, sequence_id="rebatch", sequence_start=True)
    x = features(rng, batch=3, time=4)
    parts = run_sequence(client, "gru", chunked(x, (2, 2)), "rebatch", output="dense")
    assert close(np.concatenate(parts, axis=1), stateless(client, "gru", x, "dense"))


def test_a_start_and_end_in_one_request_is_a_stateless_call(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng, time=4)
    once = infer(client, "gru", {"x": x}, outputs=["dense"], sequence_id=5, sequence_start=True, sequence_end=True)
    assert close(once.as_numpy("dense"), stateless(client, "gru", x, "dense"))
    raises_error(lambda: infer(client, "gru", {"x": x}, sequence_id=5), 400, contains="sequence_start=true")


def test_requests_after_the_end_or_without_a_start_say_start_is_needed(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng)
    run_sequence(client, "gru", chunked(x), 31337, output="dense")  # ends with sequence_end
    after_end = lambda: infer(client, "gru", {"x": x[:, :1]}, sequence_id=31337)  # noqa: E731
    raises_error(after_end, 400, contains="sequence 31337 of model 'gru' is not active")
    raises_error(after_end, 400, contains="sequence_start=true")
    never = lambda: infer(client, "gru", {"x": x[:, :1]}, sequence_id="never", sequence_end=True)  # noqa: E731
    raises_error(never, 400, contains="sequence 'never' of model 'gru' is not active")


def test_a_model_that_cannot_stream_refuses_sequences_but_serves_stateless(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng, time=3)
    assert infer(client, "bidi", {"x": x}).as_numpy("bidirectional").shape == (1, 3, 4)
    assert client.get_model_metadata("bidi")["sequences"] is False
    start = lambda: infer(client, "bidi", {"x": x}, sequence_id=1, sequence_start=True)  # noqa: E731
    raises_error(start, 409, contains="cannot run sequences")


# ---- bad requests -------------------------------------------------------------------------------------------------


def test_bad_requests_are_4xx_and_leave_a_live_sequence_unchanged(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng)
    chunks = chunked(x)
    sid = "guarded"
    parts = [infer(client, "gru", {"x": chunks[0]}, outputs=["dense"], sequence_id=sid, sequence_start=True)]
    bad_calls = {
        "wrong datatype": (lambda: infer(client, "gru", {"x": chunks[1].astype(np.float64)}, sequence_id=sid), 400),
        "wrong features": (lambda: infer(client, "gru", {"x": features(rng, time=2)[..., :2]}, sequence_id=sid), 400),
        "wrong rank": (lambda: infer(client, "gru", {"x": chunks[1][0]}, sequence_id=sid), 400),
        "other batch": (lambda: infer(client, "gru", {"x": features(rng, batch=2, time=1)}, sequence_id=sid), 400),
        "unknown input": (lambda: infer(client, "gru", {"y": chunks[1]}, sequence_id=sid), 400),
        "unknown output": (lambda: infer(client, "gru", {"x": chunks[1]}, outputs=["nope"], sequence_id=sid), 400),
        "unknown model": (lambda: infer(client, "nope", {"x": chunks[1]}, sequence_id=sid), 404),
        "bad restart": (
            lambda: infer(client, "gru", {"x": chunks[1][..., :2]}, sequence_id=sid, sequence_start=True),
            400,
        ),
    }
    for what, (call, status) in bad_calls.items():
        error = raises_error(call, status)
        assert error.message(), what
    for i, chunk in enumerate(chunks[1:], start=1):
        end = i == len(chunks) - 1
        parts.append(infer(client, "gru", {"x": chunk}, outputs=["dense"], sequence_id=sid, sequence_end=end))
    assert close(np.concatenate([p.as_numpy("dense") for p in parts], axis=1), stateless(client, "gru", x, "dense"))


def test_bad_request_messages_name_the_problem(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    x = features(rng, time=2)
    raises_error(lambda: infer(client, "gru", {"x": x.astype(np.float64)}), 400, contains="datatype FP32, got FP64")
    raises_error(lambda: infer(client, "gru", {"x": x[..., :2]}), 400, contains="dimension 2 must be 3")
    raises_error(lambda: infer(client, "gru", {"y": x}), 400, contains="has no input 'y'")
    raises_error(lambda: infer(client, "gru", {"x": x}, outputs=["nope"]), 400, contains="has no output 'nope'")
    nan = x.copy()
    nan[0, 0, 0] = np.nan
    raises_error(lambda: infer(client, "gru", {"x": nan}, binary=True), 400, contains="NaN")
