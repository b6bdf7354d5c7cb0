"""Monte-Carlo dropout (`rnnserve.mc_dropout`) against real Keras `model(x, training=True)`.

Statistical bounds: the fixture holds, per output element, the mean, variance and 4th central moment of
`K = samples` Keras draws; rnnserve draws `N = 4000` samples from seed 0. For every element we require

    |mean_rnnserve - mean_keras| <= Z * sqrt(var_keras / K + var_rnnserve / N)
    |var_rnnserve - var_keras|   <= Z * sqrt((m4_keras - var_keras**2) / K + (m4_rnnserve - var_rnnserve**2) / N)

with Z = 5 (the standard errors of a sample mean and of a sample variance; K = 4000 too). For two samplers with
the same distribution each comparison fails with probability about 6e-7 (normal approximation), so the 16
comparisons (8 output elements, mean and variance) fail together with probability about 1e-5; the seed is fixed,
so the test is deterministic. It runs on both runners: the numpy reference and onnxruntime (the model's
Monte-Carlo dropout graph, which draws the same masks from the same seed). A mistake in the masks (no inverted
scaling, recurrent dropout or a Dropout layer left out) moves the mean or the variance of these models by more
than this bound (checked by `test_the_bound_catches_a_wrong_mask_rule`). One input mask shared by GRU/LSTM gates
where Keras draws one per gate does NOT move these statistics beyond the bound: that rule rests on Keras' code
(quoted in `service/rnnserve/mc_dropout.py`) and on the mask shapes checked below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from graph_provider import runtime_options
from parity_harness import assert_close
from training_fixtures import TRAINING, arrays, cases_of

from rnnserve.importers import load_spec
from rnnserve.layers.model import ReferenceModel
from rnnserve.mc_dropout import DropoutRequest, Samples, run_samples, run_samples_ort
from rnnserve.runtime.ort_model import OrtModel

DROPOUT_CASES = cases_of("dropout")
SAMPLES = 4000
Z = 5.0


def _reference(case: dict[str, Any]) -> ReferenceModel:
    return ReferenceModel(load_spec(TRAINING / case["file"], name=case["id"]))


def _run(runner: str, case: dict[str, Any], x: np.ndarray, request: DropoutRequest) -> Samples:
    spec = load_spec(TRAINING / case["file"], name=case["id"])
    if runner == "reference":
        return run_samples(ReferenceModel(spec), {"x": x}, None, None, request)
    return run_samples_ort(OrtModel(spec, runtime_options()), {"x": x}, None, None, request)


def _moments(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = samples.mean(axis=0)
    var = samples.var(axis=0)
    return mean, var, ((samples - mean) ** 4).mean(axis=0)


def _within_bounds(case: dict[str, Any], samples: np.ndarray) -> tuple[float, float]:
    """The worst |difference| / bound over elements, for the mean and for the variance (<= 1 passes)."""
    data = arrays(case)
    k = case["samples"]
    mean, var, m4 = _moments(samples.astype(np.float64))
    mean_bound = Z * np.sqrt(data["var_0"] / k + var / SAMPLES) + 1e-7
    var_bound = Z * np.sqrt(np.maximum(data["m4_0"] - data["var_0"] ** 2, 0) / k + np.maximum(m4 - var**2, 0) / SAMPLES)
    return (
        float(np.max(np.abs(mean - data["mean_0"]) / mean_bound)),
        float(np.max(np.abs(var - data["var_0"]) / (var_bound + 1e-9))),
    )


@pytest.mark.parametrize("runner", ["reference", "onnxruntime"])
@pytest.mark.parametrize("tcase", DROPOUT_CASES, ids=[c["id"] for c in DROPOUT_CASES])
def test_mean_and_variance_agree_with_keras_training_calls(tcase: dict[str, Any], runner: str) -> None:
    assert tcase["samples"] >= 1000
    x = arrays(tcase)["in_x"]
    samples = _run(runner, tcase, x, DropoutRequest(SAMPLES, 0))
    mean_ratio, var_ratio = _within_bounds(tcase, next(iter(samples.outputs.values())))
    assert mean_ratio <= 1.0, f"mean off by {mean_ratio:.2f} bounds"
    assert var_ratio <= 1.0, f"variance off by {var_ratio:.2f} bounds"


WRONG_RULES = {
    "no inverted scaling": lambda name, mask: (mask > 0).astype(np.float64),
    "recurrent dropout left out": lambda name, mask: np.ones_like(mask) if name.endswith("recurrent_dropout") else mask,
    "Dropout layer left out": lambda name, mask: np.ones_like(mask) if name.endswith("/mask") else mask,
}


@pytest.mark.parametrize("rule", list(WRONG_RULES))
def test_the_bound_catches_a_wrong_mask_rule(monkeypatch: pytest.MonkeyPatch, rule: str) -> None:
    from rnnserve import mc_dropout

    case = next(c for c in DROPOUT_CASES if c["id"] == "k3_mc_dropout_stack")
    original = mc_dropout.MaskSource.get

    def wrong(
        self: mc_dropout.MaskSource, name: str, shape: tuple[int, ...], rate: float, same_as: str | None = None
    ) -> np.ndarray:
        return WRONG_RULES[rule](name, original(self, name, shape, rate, same_as))  # type: ignore[no-untyped-call]

    monkeypatch.setattr(mc_dropout.MaskSource, "get", wrong)
    x = arrays(case)["in_x"]
    samples = run_samples(_reference(case), {"x": x}, None, None, DropoutRequest(SAMPLES, 0))
    assert max(_within_bounds(case, next(iter(samples.outputs.values())))) > 1.0


@pytest.mark.parametrize("tcase", DROPOUT_CASES, ids=[c["id"] for c in DROPOUT_CASES])
def test_masks_of_ones_give_the_inference_output_of_onnxruntime(tcase: dict[str, Any]) -> None:
    spec = load_spec(TRAINING / tcase["file"], name=tcase["id"])
    reference = ReferenceModel(spec)
    x = arrays(tcase)["in_x"]
    drawn = run_samples(reference, {"x": x}, None, None, DropoutRequest(3, 7)).masks
    ones = {name: np.ones_like(mask) for name, mask in drawn.items()}
    samples = run_samples(reference, {"x": x}, None, None, DropoutRequest(3, 7), masks=ones)
    plain = OrtModel(spec).run({"x": x})
    for name, value in samples.outputs.items():
        for n in range(3):
            assert_close(value[n], plain.outputs[name], f"sample {n} of {name} with masks of ones")
            assert_close(value[n], arrays(tcase)["out_0"], f"sample {n} of {name} against Keras' inference output")


@pytest.mark.parametrize("tcase", DROPOUT_CASES, ids=[c["id"] for c in DROPOUT_CASES])
def test_seeded_samples_repeat_and_explicit_masks_replay_them(tcase: dict[str, Any]) -> None:
    reference = _reference(tcase)
    x = arrays(tcase)["in_x"]
    first = run_samples(reference, {"x": x}, None, None, DropoutRequest(5, 11))
    again = run_samples(reference, {"x": x}, None, None, DropoutRequest(5, 11))
    other = run_samples(reference, {"x": x}, None, None, DropoutRequest(5, 12))
    replay = run_samples(reference, {"x": x}, None, None, DropoutRequest(5, 99), masks=first.masks)
    for name, value in first.outputs.items():
        assert np.array_equal(value, again.outputs[name]) and np.array_equal(value, replay.outputs[name])
        assert not np.allclose(value, other.outputs[name])
        assert not np.allclose(value[0], value[1])  # samples differ from one another
    for name, mask in first.masks.items():  # inverted dropout: 0 or 1 / (1 - rate)
        assert set(np.unique(mask)) <= {0.0, float(mask.max())} and mask.max() > 1.0, name


def test_masks_follow_keras_per_call_and_per_gate_rules() -> None:
    case = next(c for c in DROPOUT_CASES if c["id"] == "k3_mc_dropout_stack")
    x = arrays(case)["in_x"]  # (2, 5, 3)
    masks = run_samples(_reference(case), {"x": x}, None, None, DropoutRequest(4, 0)).masks
    rows = 8
    assert masks["gru/dropout"].shape == (3, rows, 3)  # recurrent_dropout > 0: one input mask per gate
    assert masks["gru/recurrent_dropout"].shape == (3, rows, 4)
    assert masks["lstm/dropout"].shape == (1, rows, 4)  # no recurrent_dropout: one mask shared by the gates
    assert "lstm/recurrent_dropout" not in masks
    assert masks["rnn/dropout"].shape == (1, rows, 3) and masks["rnn/recurrent_dropout"].shape == (1, rows, 2)
    assert masks["drop/mask"].shape == (rows, 5, 4)  # a Dropout layer: every element, every timestep


def test_a_model_without_dropout_gives_identical_samples() -> None:
    case = next(c for c in cases_of("reset"))  # stateful stacks without any dropout rate
    spec = load_spec(TRAINING / case["file"], name=case["id"])
    x = arrays(case)["b0_in_x"]
    samples = run_samples(ReferenceModel(spec), {"x": x}, None, None, DropoutRequest(6, 3))
    assert samples.masks == {}
    plain = OrtModel(spec).run({"x": x})
    for name, value in samples.outputs.items():
        assert value.shape[0] == 6 and all(np.array_equal(value[0], value[n]) for n in range(6))
        assert_close(value[0], plain.outputs[name], name)


@pytest.mark.parametrize("tcase", DROPOUT_CASES, ids=[c["id"] for c in DROPOUT_CASES])
def test_onnxruntime_equals_the_reference_with_the_same_masks(tcase: dict[str, Any]) -> None:
    x = arrays(tcase)["in_x"]
    reference = _run("reference", tcase, x, DropoutRequest(16, 4))
    drawn = _run("onnxruntime", tcase, x, DropoutRequest(16, 4))  # the same seed draws the same masks
    spec = load_spec(TRAINING / tcase["file"], name=tcase["id"])
    given = run_samples_ort(OrtModel(spec, runtime_options()), {"x": x}, None, None, DropoutRequest(16, 0),
                            masks=reference.masks)  # fmt: skip
    assert list(drawn.masks) == list(reference.masks)
    assert all(np.array_equal(drawn.masks[k], v) for k, v in reference.masks.items())
    for samples in (drawn, given):
        for name, value in reference.outputs.items():
            assert_close(samples.outputs[name], value, name)
        for k, (a, e) in enumerate(zip(samples.states, reference.states, strict=True)):
            assert_close(a, e, f"state {k}")


def test_a_model_without_dropout_gives_identical_samples_on_onnxruntime() -> None:
    case = next(c for c in cases_of("reset"))
    x = arrays(case)["b0_in_x"]
    samples = _run("onnxruntime", case, x, DropoutRequest(6, 3))
    assert samples.masks == {}
    for name, value in samples.outputs.items():
        assert value.shape[0] == 6 and all(np.array_equal(value[0], value[n]) for n in range(6))
        assert_close(value[0], arrays(case)["b0_out_0"], f"{name} against Keras")
