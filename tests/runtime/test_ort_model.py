"""OrtModel and the model repository: providers, graph variants, the shared call shape, load failures."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rnnserve.errors import InvalidArgument, ModelNotFound, ModelNotReady
from rnnserve.export.package import write_package
from rnnserve.layers.model import ReferenceModel
from rnnserve.modeling import (
    keras_model_sequential,
    layer_dense,
    layer_gru,
    layer_lstm,
    layer_simple_rnn,
    set_random_seed,
)
from rnnserve.runtime.ort_model import OrtModel, RuntimeOptions, resolve_providers, with_options
from rnnserve.runtime.repository import ModelRepository, scan_entries
from rnnserve.spec import ModelSpec


def close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def stacked(unroll: bool = False, timesteps: int | None = None) -> ModelSpec:
    set_random_seed(3)
    model = keras_model_sequential(input_shape=(timesteps, 4), name="stacked", input_layer_name="x")
    layer_lstm(model, units=5, return_sequences=True, unroll=unroll)
    layer_gru(model, units=3, return_sequences=True, unroll=unroll)
    layer_dense(model, units=2, name="head")
    return model.to_spec()


def test_cpu_is_always_available_and_auto_falls_back_to_it_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    with caplog.at_level(logging.INFO, logger="rnnserve.runtime.ort_model"):
        chosen = resolve_providers("auto")
    expected = (
        "CUDAExecutionProvider" if "CUDAExecutionProvider" in ort.get_available_providers() else "CPUExecutionProvider"
    )
    assert chosen[0] == expected
    assert "provider=auto chose" in caplog.text


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA build is installed")
def test_cuda_without_onnxruntime_gpu_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument, match="onnxruntime-gpu"):
        resolve_providers("cuda")


def test_cuda_sessions_run_without_tf32() -> None:
    assert with_options(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        ("CUDAExecutionProvider", {"use_tf32": "0"}),
        "CPUExecutionProvider",
    ]
    assert with_options(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu")
def test_cuda_runs_every_graph_of_a_model_with_the_reference_numbers() -> None:
    spec = stacked()
    model = OrtModel(spec, RuntimeOptions(provider="cuda"))
    assert model.active_provider == "CUDAExecutionProvider"
    for graph in (model._general, model._variants[1]):  # the Scan graph and the unrolled one-step graph
        assert graph.session.get_providers()[0] == "CUDAExecutionProvider"
        assert graph.session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "0"
    x = np.random.default_rng(2).normal(size=(3, 7, 4)).astype(np.float32)
    want = ReferenceModel(spec).run({"x": x})
    whole = model.run({"x": x})
    close(whole.outputs["head"], want.outputs["head"])
    states = None
    for t in range(7):
        step = model.run({"x": x[:, t : t + 1]}, states=states)
        close(step.outputs["head"], want.outputs["head"][:, t : t + 1])
        states = step.states
    for a, b in zip(states or [], want.states, strict=True):
        close(a, b)


def test_an_unknown_provider_names_the_choices() -> None:
    with pytest.raises(InvalidArgument, match="'cpu', 'cuda' or 'auto'"):
        resolve_providers("tpu")


def test_thread_settings_reach_onnxruntime() -> None:
    model = OrtModel(stacked(), RuntimeOptions(intra_op_threads=2, inter_op_threads=1))
    options = model._general.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert model.active_provider == "CPUExecutionProvider"


def test_reference_and_onnxruntime_share_one_call_shape_and_the_numbers() -> None:
    spec = stacked()
    reference, onnx_model = ReferenceModel(spec), OrtModel(spec)
    assert reference.signature.states == onnx_model.signature.states
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 4)).astype(np.float32)
    mask = np.array([[True] * 6, [True, True, False, True, False, False]])
    states = [rng.normal(size=(2, int(s.shape[1] or 0))).astype(np.float32) for s in onnx_model.signature.states]
    for kwargs in ({}, {"mask": mask}, {"states": states}, {"mask": mask, "states": states}):
        want, got = reference.run({"x": x}, **kwargs), onnx_model.run({"x": x}, **kwargs)
        for name in want.outputs:
            close(got.outputs[name], want.outputs[name])
        for a, b in zip(got.states, want.states, strict=True):
            close(a, b)


def test_one_timestep_chunks_use_the_unrolled_step_graph_and_equal_the_whole_sequence() -> None:
    model = OrtModel(stacked())
    assert 1 in model._variants and model._variants[1].fixed_time == 1
    x = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    whole = model.run({"x": x})
    states = None
    outputs = []
    for t in range(5):
        step = model.run({"x": x[:, t : t + 1]}, states=states)
        outputs.append(step.outputs["head"])
        states = step.states
    close(np.concatenate(outputs, axis=1), whole.outputs["head"])
    for a, b in zip(states or [], whole.states, strict=True):
        close(a, b)


def test_an_unrolled_model_serves_other_lengths_through_a_scan_variant() -> None:
    spec = stacked(unroll=True, timesteps=4)
    model = OrtModel(spec)
    assert model._general.fixed_time == 4
    x = np.random.default_rng(2).normal(size=(2, 7, 4)).astype(np.float32)
    close(model.run({"x": x}).outputs["head"], ReferenceModel(spec).run({"x": x}).outputs["head"])
    assert 0 in model._variants  # built on demand for T=7


def test_the_repository_serves_good_entries_and_reports_a_broken_one(tmp_path: Path) -> None:
    set_random_seed(0)
    rnn = keras_model_sequential(input_shape=(None, 2), name="rnn", input_layer_name="x")
    layer_simple_rnn(rnn, units=3)
    write_package(rnn.to_spec(), tmp_path / "good")
    (tmp_path / "broken.keras").write_bytes(b"not a zip file")
    (tmp_path / "_scratch.keras").write_bytes(b"skipped: leading underscore")
    (tmp_path / "notes.md").write_text("not a model")
    assert sorted(scan_entries(tmp_path)) == ["broken", "good"]

    repository = ModelRepository(tmp_path)
    assert not repository.ready
    asyncio.run(repository.load_all())
    assert repository.ready
    assert repository.get("good").signature is not None
    with pytest.raises(ModelNotReady, match="broken"):
        repository.get("broken")
    with pytest.raises(ModelNotFound, match="known"):
        repository.get("missing")
    broken = next(m for m in repository.list() if m.name == "broken")
    assert broken.status == "failed" and broken.error and broken.load_seconds is not None
