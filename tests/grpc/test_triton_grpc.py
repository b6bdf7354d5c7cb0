"""An unmodified `tritonclient.grpc` client drives the gRPC server: health, metadata, stateless infer with raw and
typed contents, sequences with uint64 and string ids interleaved on one ModelStreamInfer stream (start, end and
restart), bad requests (each a gRPC error with a clear message, the sequence unchanged), and the same numbers as
/v1 and /v2 over HTTP."""

from __future__ import annotations

import contextlib
import queue

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from grpc_client import (
    Grpc,
    Request,
    infer,
    inputs_of,
    raises_status,
    raw_output,
    request_of,
    stream,
    stub_for,
    typed_output,
)
from tritonclient.utils import InferenceServerException
from v2.v2_models import FEATURES, VOCAB

CHUNKS = (1, 2, 1, 3, 1, 2)  # six requests of different lengths: 10 timesteps
TOLERANCE = 1e-6


def chunked(x: np.ndarray, lengths: tuple[int, ...] = CHUNKS) -> list[np.ndarray]:
    bounds = np.cumsum((0, *lengths))
    return [x[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def features(rng: np.random.Generator, batch: int = 1, time: int = sum(CHUNKS)) -> np.ndarray:
    return rng.normal(size=(batch, time, FEATURES)).astype(np.float32)


def stateless(client: triton.InferenceServerClient, model: str, x: np.ndarray, output: str) -> np.ndarray:
    return infer(client, model, {"x": x}, outputs=[output]).as_numpy(output)


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


# ---- health and metadata ------------------------------------------------------------------------------------------


def test_server_is_live_and_ready_and_lists_its_extensions(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "rnnserve" and metadata["version"]
    assert "sequence" in metadata["extensions"]


def test_model_metadata_has_inputs_and_outputs_with_batch_as_minus_one(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("gru", as_json=True)
    assert metadata["name"] == "gru" and metadata["versions"] == ["1"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "-1", str(FEATURES)]}]
    assert metadata["outputs"] == [{"name": "dense", "datatype": "FP32", "shape": ["-1", "-1", "2"]}]
    assert client.get_model_metadata("gru", model_version="1", as_json=True) == metadata
    tokens = client.get_model_metadata("tokens")
    assert [(t.name, t.datatype, list(t.shape)) for t in tokens.inputs] == [("ids", "INT64", [-1, -1])]


def test_models_are_ready_under_their_one_version(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("gru") and client.is_model_ready("gru", "1")
    assert not client.is_model_ready("gru", "2") and not client.is_model_ready("nope")
    assert not client.is_model_ready("broken")


def test_unknown_models_and_versions_are_not_found(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    code = grpc.StatusCode.NOT_FOUND
    raises_status(lambda: client.get_model_metadata("nope"), code, contains="no model named 'nope'")
    raises_status(lambda: client.get_model_metadata("gru", model_version="2"), code, contains="no version '2'")
    x = {"x": features(rng)}
    raises_status(lambda: infer(client, "nope", x), code, contains="nope")
    raises_status(lambda: infer(client, "gru", x, model_version="3"), code, contains="serves version 1")
    raises_status(lambda: infer(client, "nope", x, sequence_id=4, sequence_start=True), code, contains="nope")


def test_a_model_that_failed_to_load_is_unavailable(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    raises_status(lambda: client.get_model_metadata("broken"), grpc.StatusCode.UNAVAILABLE, contains="broken")
    raises_status(lambda: infer(client, "broken", {"x": features(rng)}), grpc.StatusCode.UNAVAILABLE)


# ---- stateless ----------------------------------------------------------------------------------------------------


def test_stateless_infer_equals_v1_and_v2_over_http(
    server: Grpc, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng, batch=2, time=5)
    y = infer(client, "gru", {"x": x}).as_numpy("dense")  # no outputs named: every output
    assert y.shape == (2, 5, 2) and y.dtype == np.float32
    with triton_http.InferenceServerClient(server.http.address) as http_v2:
        tensor = triton_http.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        assert_close(y, http_v2.infer("gru", [tensor]).as_numpy("dense"))
    v1 = httpx.post(f"{server.url}/v1/models/gru/predict", json={"inputs": x.tolist()}, timeout=30)
    assert v1.status_code == 200, v1.text
    assert_close(y, np.array(v1.json()["outputs"], dtype=np.float32))


def test_typed_contents_answer_typed_and_equal_raw_contents(server: Grpc, rng: np.random.Generator) -> None:
    x = features(rng, batch=2, time=4)
    with stub_for(server.address) as stub:
        typed = stub.infer(request_of("gru", {"x": x}, typed=True, outputs=["dense"]))
        raw = stub.infer(request_of("gru", {"x": x}, typed=False, outputs=["dense"]))
    assert typed.outputs[0].contents.fp32_contents and not typed.raw_output_contents
    assert len(raw.raw_output_contents) == 1 and not raw.outputs[0].HasField("contents")
    np.testing.assert_array_equal(typed_output(typed, "dense"), raw_output(raw, "dense"))


def test_final_states_are_outputs_on_request(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    x = features(rng, batch=2, time=3)
    result = infer(client, "lstm", {"x": x}, outputs=["lstm", "lstm/h", "lstm/c"])
    assert [o.name for o in result.get_response().outputs] == ["lstm", "lstm/h", "lstm/c"]
    assert_close(result.as_numpy("lstm/h"), result.as_numpy("lstm")[:, -1])  # h is the last output
    assert result.as_numpy("lstm/c").shape == (2, 4)


def test_request_id_is_echoed(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    assert infer(client, "gru", {"x": features(rng, time=2)}, request_id="r-42").get_response().id == "r-42"


def test_int64_token_ids_and_a_bool_mask(client: triton.InferenceServerClient, rng: np.random.Generator) -> None:
    ids = np.array([[1, 2, 3, 0]], dtype=np.int64)
    assert infer(client, "tokens", {"ids": ids}).as_numpy("simple_rnn").shape == (1, 4, 3)
    x = features(rng, time=4)
    mask = np.array([[True, True, False, True]])
    masked = infer(client, "gru", {"x": x, "mask": mask}, outputs=["gru/h"]).as_numpy("gru/h")
    skipped = infer(client, "gru", {"x": x[:, [0, 1, 3]]}, outputs=["gru/h"]).as_numpy("gru/h")
    assert_close(masked, skipped)
    raises_status(
        lambda: infer(client, "tokens", {"ids": np.array([[VOCAB]], dtype=np.int64)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        contains="token ids below 10",
    )


# ---- sequences ----------------------------------------------------------------------------------------------------


def test_uint64_and_string_sequences_interleaved_on_one_stream(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    """Three sequences on one stream, their requests interleaved: an integer id, a string id, and the string of
    the same digits (a different sequence). Each equals the stateless infer of its whole input."""
    ids: tuple[int | str, ...] = (2**63 - 1, "user-7", str(2**63 - 1))
    xs = {sid: features(rng) for sid in ids}
    requests = []
    for i in range(len(CHUNKS)):
        for sid in ids:
            flags = {"sequence_start": i == 0, "sequence_end": i == len(CHUNKS) - 1}
            chunk = chunked(xs[sid])[i]
            options = {"sequence_id": sid, **flags}
            requests.append(Request(f"{sid!r}/{i}", "gru", {"x": chunk}, ["dense"], options))
    streamed = stream(client, requests)
    assert not streamed.errors
    for sid in ids:
        parts = [streamed.output(f"{sid!r}/{i}", "dense") for i in range(len(CHUNKS))]
        assert_close(np.concatenate(parts, axis=1), stateless(client, "gru", xs[sid], "dense"))
        # the responses of one sequence come in the order of its requests
        mine = [r for r in streamed.order if r.startswith(f"{sid!r}/")]
        assert mine == [f"{sid!r}/{i}" for i in range(len(CHUNKS))]
    last = streamed.results[f"{ids[1]!r}/{len(CHUNKS) - 1}"].get_response()
    assert last.parameters["sequence_id"].string_param == "user-7"
    assert last.parameters["sequence_step"].int64_param == sum(CHUNKS)


def test_many_sequences_interleaved_on_one_stream_equal_v2_over_http(
    server: Grpc, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    """Twelve sequences of three models on one stream, their requests interleaved (the plain steps between start
    and end go to the data plane in batches), with failing requests among them: one response per request, each
    sequence's in order, the failures spare the rest, and every output equals the same sequence's over /v2 HTTP."""
    lengths = (1, 1, 2, 1, 1)
    sequences: dict[int | str, tuple[str, str, np.ndarray, list[str] | None]] = {}
    for n in range(4):
        sequences[9001 + n] = ("gru", "x", features(rng, time=sum(lengths)), None)
        sequences[f"lstm-{n}"] = ("lstm", "x", features(rng, batch=2, time=sum(lengths)), ["lstm", "lstm/h"])
        ids = rng.integers(1, VOCAB, size=(1, sum(lengths))).astype(np.int64)
        sequences[f"tokens-{n}"] = ("tokens", "ids", ids, None)
    requests = []
    for i in range(len(lengths)):
        for sid, (model, name, x, outputs) in sequences.items():
            flags = {"sequence_start": i == 0, "sequence_end": i == len(lengths) - 1}
            chunk = chunked(x, lengths)[i]
            requests.append(Request(f"{sid}/{i}", model, {name: chunk}, outputs, {"sequence_id": sid, **flags}))
        if i == 2:
            gru_chunk = chunked(sequences[9001][2], lengths)[i]
            requests += [
                Request("unstarted", "gru", {"x": gru_chunk}, None, {"sequence_id": 9999}),
                Request("nan", "gru", {"x": np.full_like(gru_chunk, np.nan)}, None, {"sequence_id": 9001}),
                Request("narrow", "gru", {"x": gru_chunk[..., :2]}, None, {"sequence_id": 9002}),
            ]
    streamed = stream(client, requests)
    assert len(streamed.results) + len(streamed.errors) == len(requests)
    assert sorted(streamed.failed) == ["nan", "narrow", "unstarted"]
    for contains in ("sequence 9999 of model 'gru' is not active", "NaN", "dimension 2 must be 3"):
        assert [e for e in streamed.errors if e.startswith("INVALID_ARGUMENT: ") and contains in e], contains
    with triton_http.InferenceServerClient(server.http.address) as http_v2:
        for sid, (model, name, x, outputs) in sequences.items():
            mine = [r for r in streamed.order if r.startswith(f"{sid}/")]
            assert mine == [f"{sid}/{i}" for i in range(len(lengths))]
            for i, chunk in enumerate(chunked(x, lengths)):
                flags = {"sequence_start": i == 0, "sequence_end": i == len(lengths) - 1}
                tensor = triton_http.InferInput(name, list(chunk.shape), "INT64" if model == "tokens" else "FP32")
                tensor.set_data_from_numpy(chunk)
                wanted = None if outputs is None else [triton_http.InferRequestedOutput(o) for o in outputs]
                over_v2 = http_v2.infer(model, [tensor], outputs=wanted, sequence_id=f"http-{sid}", **flags)
                result = streamed.results[f"{sid}/{i}"]
                names = [o.name for o in result.get_response().outputs]
                assert names == (outputs or [o["name"] for o in over_v2.get_response()["outputs"]])
                for output in names:
                    assert_close(result.as_numpy(output), over_v2.as_numpy(output))
                assert result.get_response().parameters["sequence_step"].int64_param == sum(lengths[: i + 1])


def test_a_sequence_over_grpc_equals_v2_and_v1_over_http(
    server: Grpc, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    """The same chunks through a gRPC sequence (ModelInfer), a /v2 HTTP sequence and a /v1 session: outputs and
    states agree within 1e-6 at every step."""
    x = rng.normal(size=(2, 10, FEATURES)).astype(np.float32)
    outputs = ["lstm", "lstm/h", "lstm/c"]
    with (
        httpx.Client(base_url=server.url, timeout=30) as http,
        triton_http.InferenceServerClient(server.http.address) as http_v2,
    ):
        session_id = http.post("/v1/sessions", json={"model": "lstm", "batch_size": 2}).json()["session_id"]
        for i, chunk in enumerate(chunked(x)):
            flags = {"sequence_start": i == 0, "sequence_end": i == len(CHUNKS) - 1}
            over_grpc = infer(client, "lstm", {"x": chunk}, outputs=outputs, sequence_id=77, **flags)
            tensor = triton_http.InferInput("x", list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            wanted = [triton_http.InferRequestedOutput(name) for name in outputs]
            over_v2 = http_v2.infer("lstm", [tensor], outputs=wanted, sequence_id=78, **flags)
            v1 = http.post(f"/v1/sessions/{session_id}/step", json={"inputs": chunk.tolist(), "return_state": True})
            assert v1.status_code == 200, v1.text
            for name in outputs:
                assert_close(over_grpc.as_numpy(name), over_v2.as_numpy(name))
            assert_close(over_grpc.as_numpy("lstm"), np.array(v1.json()["outputs"], dtype=np.float32))
            for name, state in zip(outputs[1:], v1.json()["states"], strict=True):
                assert_close(over_grpc.as_numpy(name), np.array(state, dtype=np.float32))


def test_grpc_and_http_share_their_sequences(
    server: Grpc, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    """A sequence id names one sequence whichever protocol carries its requests: started over HTTP, it goes on
    over gRPC (and the other way round)."""
    x = features(rng)
    chunks = chunked(x)
    parts = []
    with triton_http.InferenceServerClient(server.http.address) as http_v2:
        for i, chunk in enumerate(chunks):
            flags = {"sequence_start": i == 0, "sequence_end": i == len(chunks) - 1}
            if i % 2 == 0:
                tensor = triton_http.InferInput("x", list(chunk.shape), "FP32")
                tensor.set_data_from_numpy(chunk)
                parts.append(http_v2.infer("gru", [tensor], sequence_id="shared", **flags).as_numpy("dense"))
            else:
                parts.append(infer(client, "gru", {"x": chunk}, sequence_id="shared", **flags).as_numpy("dense"))
    assert_close(np.concatenate(parts, axis=1), stateless(client, "gru", x, "dense"))


def test_a_second_start_restarts_and_an_end_ends(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng)
    chunks = chunked(x)
    requests = [
        Request("a0", "gru", {"x": chunks[0]}, ["dense"], {"sequence_id": 5, "sequence_start": True}),
        Request("a1", "gru", {"x": chunks[1]}, ["dense"], {"sequence_id": 5}),
        Request("b0", "gru", {"x": chunks[0]}, ["dense"], {"sequence_id": 5, "sequence_start": True}),  # restart
        Request("b1", "gru", {"x": chunks[1]}, ["dense"], {"sequence_id": 5, "sequence_end": True}),
        Request("after", "gru", {"x": chunks[2]}, ["dense"], {"sequence_id": 5}),  # ended: needs a start
        Request("c0", "gru", {"x": chunks[2]}, ["dense"], {"sequence_id": 5, "sequence_start": True}),
    ]
    streamed = stream(client, requests)
    np.testing.assert_array_equal(streamed.output("b0", "dense"), streamed.output("a0", "dense"))
    np.testing.assert_array_equal(streamed.output("b1", "dense"), streamed.output("a1", "dense"))
    assert streamed.results["b1"].get_response().parameters["sequence_step"].int64_param == 3
    assert streamed.failed == ["after"]
    (error,) = streamed.errors
    assert error.startswith("INVALID_ARGUMENT: sequence 5 of model 'gru' is not active")
    assert "sequence_start=true" in error
    assert_close(streamed.output("c0", "dense"), stateless(client, "gru", chunks[2], "dense"))
    raises_status(
        lambda: infer(client, "gru", {"x": chunks[0]}, sequence_id=6),
        grpc.StatusCode.INVALID_ARGUMENT,
        contains="sequence 6 of model 'gru' is not active",
    )


def test_uint64_ids_beyond_int64_and_0_for_no_sequence(server: Grpc, rng: np.random.Generator) -> None:
    """tritonclient sends integer ids as int64_param; ids up to 2**64 - 1 come as uint64_param, and the response
    says the id back the same way. sequence_id 0 means no sequence: start/end then are an error."""
    x = features(rng, time=4)
    top = 2**64 - 1
    with stub_for(server.address) as stub:
        first = stub.infer(
            request_of(
                "gru",
                {"x": x[:, :2]},
                typed=False,
                parameters={"sequence_id": ("uint64_param", top), "sequence_start": ("bool_param", True)},
            )
        )
        second = stub.infer(
            request_of(
                "gru",
                {"x": x[:, 2:]},
                typed=False,
                parameters={"sequence_id": ("uint64_param", top), "sequence_end": ("bool_param", True)},
            )
        )
        whole = stub.infer(request_of("gru", {"x": x}, typed=False))
        assert first.parameters["sequence_id"].uint64_param == top
        assert second.parameters["sequence_step"].int64_param == 4
        parts = np.concatenate([raw_output(first, "dense"), raw_output(second, "dense")], axis=1)
        assert_close(parts, raw_output(whole, "dense"))
        with pytest.raises(grpc.RpcError) as caught:
            stub.infer(
                request_of(
                    "gru",
                    {"x": x},
                    typed=False,
                    parameters={"sequence_id": ("int64_param", 0), "sequence_start": ("bool_param", True)},
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "need a sequence_id" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            stub.infer(request_of("gru", {"x": x}, typed=False, parameters={"sequence_id": ("int64_param", -3)}))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "sequence_id must be in [1, 2**64 - 1], got -3" in caught.value.details()


def test_a_model_that_cannot_stream_refuses_sequences(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng, time=3)
    assert infer(client, "bidi", {"x": x}).as_numpy("bidirectional").shape == (1, 3, 4)
    start = lambda: infer(client, "bidi", {"x": x}, sequence_id=1, sequence_start=True)  # noqa: E731
    raises_status(start, grpc.StatusCode.FAILED_PRECONDITION, contains="cannot run sequences")


# ---- bad requests -------------------------------------------------------------------------------------------------


def test_bad_requests_are_errors_that_leave_a_live_sequence_unchanged(
    server: Grpc, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng)
    chunks = chunked(x)
    sid = "guarded"
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    parts = [infer(client, "gru", {"x": chunks[0]}, outputs=["dense"], sequence_id=sid, sequence_start=True)]
    bad_calls = {
        "wrong datatype": (
            lambda: infer(client, "gru", {"x": chunks[1].astype(np.float64)}, sequence_id=sid),
            invalid,
            "datatype FP32, got FP64",
        ),
        "wrong features": (
            lambda: infer(client, "gru", {"x": features(rng, time=2)[..., :2]}, sequence_id=sid),
            invalid,
            "dimension 2 must be 3",
        ),
        "other batch": (
            lambda: infer(client, "gru", {"x": features(rng, batch=2, time=1)}, sequence_id=sid),
            invalid,
            "batch",
        ),
        "unknown input": (lambda: infer(client, "gru", {"y": chunks[1]}, sequence_id=sid), invalid, "no input 'y'"),
        "unknown output": (
            lambda: infer(client, "gru", {"x": chunks[1]}, outputs=["nope"], sequence_id=sid),
            invalid,
            "has no output 'nope'",
        ),
        "NaN": (
            lambda: infer(client, "gru", {"x": np.full_like(chunks[1], np.nan)}, sequence_id=sid),
            invalid,
            "NaN",
        ),
        "unknown model": (
            lambda: infer(client, "nope", {"x": chunks[1]}, sequence_id=sid),
            grpc.StatusCode.NOT_FOUND,
            "nope",
        ),
        "bad restart": (
            lambda: infer(client, "gru", {"x": chunks[1][..., :2]}, sequence_id=sid, sequence_start=True),
            invalid,
            "dimension 2 must be 3",
        ),
    }
    for what, (call, code, contains) in bad_calls.items():
        error = raises_status(call, code, contains=contains)
        assert error.message(), what
    with stub_for(server.address) as stub:  # raw contents of the wrong size, typed contents in the wrong field
        seq = {"sequence_id": ("string_param", sid)}
        short = request_of("gru", {"x": chunks[1]}, typed=False, parameters=seq)
        short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
        misplaced = request_of("gru", {"x": chunks[1]}, typed=True, parameters=seq)
        misplaced.inputs[0].contents.fp64_contents.extend(misplaced.inputs[0].contents.fp32_contents)
        del misplaced.inputs[0].contents.fp32_contents[:]
        for request, contains in (
            (short, "needs 24 bytes of raw contents, got 20"),
            (misplaced, "FP32 goes in fp32_contents, not fp64_contents"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.infer(request)
            assert caught.value.code() == invalid and contains in caught.value.details()
    for i, chunk in enumerate(chunks[1:], start=1):
        end = i == len(chunks) - 1
        parts.append(infer(client, "gru", {"x": chunk}, outputs=["dense"], sequence_id=sid, sequence_end=end))
    assert_close(np.concatenate([p.as_numpy("dense") for p in parts], axis=1), stateless(client, "gru", x, "dense"))


def test_bad_requests_on_a_stream_get_error_responses_and_the_stream_goes_on(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng)
    chunks = chunked(x)
    seq = {"sequence_id": 424242}
    requests = [Request("0", "gru", {"x": chunks[0]}, ["dense"], {**seq, "sequence_start": True})]
    bad = {
        "features": ({"x": chunks[1][..., :2]}, "INVALID_ARGUMENT: ", "dimension 2 must be 3"),
        "datatype": ({"x": chunks[1].astype(np.float64)}, "INVALID_ARGUMENT: ", "datatype FP32, got FP64"),
        "input": ({"y": chunks[1]}, "INVALID_ARGUMENT: ", "no input 'y'"),
    }
    for i, chunk in enumerate(chunks[1:], start=1):
        for what, (arrays, _, _) in bad.items():
            requests.append(Request(f"bad-{what}-{i}", "gru", arrays, ["dense"], seq))
        if i == 1:
            requests.append(Request("nope", "nope", {"x": chunk}, ["dense"], seq))
        end = {"sequence_end": True} if i == len(chunks) - 1 else {}
        requests.append(Request(str(i), "gru", {"x": chunk}, ["dense"], {**seq, **end}))
    streamed = stream(client, requests)
    assert sorted(streamed.failed) == sorted(r.request_id for r in requests if not r.request_id.isdigit())
    for _, code, contains in bad.values():
        matching = [m for m in streamed.errors if m.startswith(code) and contains in m]
        assert len(matching) == len(chunks) - 1, streamed.errors
    assert [m for m in streamed.errors if m.startswith("NOT_FOUND: ") and "'nope'" in m]
    parts = [streamed.output(str(i), "dense") for i in range(len(chunks))]
    assert_close(np.concatenate(parts, axis=1), stateless(client, "gru", x, "dense"))


# ---- limits and the API key ---------------------------------------------------------------------------------------


def test_limits_are_resource_exhausted(make_server, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_sessions=1)
    with triton.InferenceServerClient(server.address) as client:
        infer(client, "gru", {"x": features(rng, time=1)}, sequence_id=1, sequence_start=True)
        raises_status(
            lambda: infer(client, "gru", {"x": features(rng, time=1)}, sequence_id=2, sequence_start=True),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        too_big = features(rng, time=(256 * 1024) // (4 * FEATURES) + 1)  # beyond max_body_bytes
        raises_status(lambda: infer(client, "gru", {"x": too_big}), grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_the_api_key_is_call_metadata(make_server, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    server = make_server(api_key="s3cret")
    x = {"x": features(rng, time=2)}
    with triton.InferenceServerClient(server.address) as client:
        assert client.is_server_live() and client.is_server_ready()  # health needs no key, as /v2/health
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        raises_status(lambda: infer(client, "gru", x), unauthenticated, contains="Authorization: Bearer")
        raises_status(lambda: client.get_model_metadata("gru"), unauthenticated)
        raises_status(lambda: client.get_server_metadata(), unauthenticated)
        raises_status(lambda: client.is_model_ready("gru"), unauthenticated)
        wrong = {"authorization": "Bearer nope"}
        raises_status(lambda: infer(client, "gru", x, headers=wrong), unauthenticated)
        key = {"authorization": "Bearer s3cret"}
        assert infer(client, "gru", x, headers=key).as_numpy("dense").shape == (1, 2, 2)
        assert client.is_model_ready("gru", headers=key)
        errors: queue.Queue[InferenceServerException] = queue.Queue()
        client.start_stream(callback=lambda result, error: errors.put(error))
        with contextlib.suppress(InferenceServerException):  # raised once the refusal has ended the stream
            client.async_stream_infer("gru", inputs_of(x))
        client.stop_stream()
        refused = errors.get(timeout=10)
        assert refused.status() == str(unauthenticated) and "needs an API key" in refused.message()
        streamed = stream(client, [Request("0", "gru", x)], headers=key)
        assert streamed.output("0", "dense").shape == (1, 2, 2)


def test_a_cancelled_stream_leaves_the_server_serving(
    client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = features(rng, time=1)
    client.start_stream(callback=lambda result, error: None)
    for i in range(200):
        client.async_stream_infer("gru", inputs_of({"x": x}), sequence_id=f"cancelled-{i % 8}", sequence_start=i < 8)
    client.stop_stream(cancel_requests=True)
    streamed = stream(client, [Request("after", "gru", {"x": x}, ["dense"])])
    assert_close(streamed.output("after", "dense"), stateless(client, "gru", x, "dense"))


def test_inference_is_counted_with_the_http_requests(
    server: Grpc, client: triton.InferenceServerClient, rng: np.random.Generator
) -> None:
    x = {"x": features(rng, time=1)}
    infer(client, "gru", x)
    raises_status(lambda: infer(client, "gru", {"y": x["x"]}), grpc.StatusCode.INVALID_ARGUMENT)
    stream(client, [Request("0", "gru", x), Request("1", "nope", x)])
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    for route, status in (
        ("ModelInfer", "200"),
        ("ModelInfer", "400"),
        ("ModelStreamInfer", "200"),
        ("ModelStreamInfer", "404"),
    ):
        labels = f'method="GRPC",route="/inference.GRPCInferenceService/{route}",status="{status}"'
        assert f"rnnserve_requests_total{{{labels}}}" in text, labels
