"""Monte-Carlo dropout (`rnnserve.mc_dropout`) against real Keras `model(x, training=True)`.

Statistical bounds: the fixture holds, per output element, the mean, variance and 4th central moment of
`K = samples` Keras draws; rnnserve draws `N = 4000` samples from seed 0. For every element we require

    |mean_rnnserve - mean_keras| <= Z * sqrt(var_keras / K + var_rnnserve / N)
    |var_rnnserve - var_keras|   <= Z * sqrt((m4_keras - var_keras**2) / K + (m4_rnnserve - var_rnnserve**2) / N)

with Z = 5 (the standard errors of a sample mean and of a sample variance; K = 4000 too), on every output of the
model. For two samplers with the same distribution each comparison fails with probability about 6e-7 (normal
approximation), so the 376 comparisons (188 output elements over 6 fixtures, mean and variance) fail together with
probability about 2e-4; the seed is fixed, so the test is deterministic. It runs on both runners: the numpy
reference and onnxruntime (the model's Monte-Carlo dropout graph, which draws the same masks from the same seed).
The fixtures: single layers with Dropout layers (Keras 3), and Bidirectional and `RNN(StackedRNNCells)` layers
(`*_mc_dropout_bidi`, `*_mc_dropout_cells`, Keras 3 and tf_keras 2: unseeded and seeded directions, tf_keras'
fused LSTM with a per-timestep input mask, stacked cells of three types with per-cell rates, plain and in a
Bidirectional). A mistake in the masks (no inverted scaling, recurrent dropout or a Dropout layer left out;
directions sharing masks where Keras draws them apart or the other way round, one mask a sequence where tf_keras
draws one a timestep, a stacked cell's input masks or a backward direction's left out) moves the mean or the
variance of these models by more than this bound (checked by `test_the_bound_catches_a_wrong_mask_rule` and
`test_the_bound_catches_a_wrong_rule_for_bidirectional_and_stacked_cells`). One input mask shared by GRU/LSTM
gates where Keras draws one per gate does NOT move these statistics beyond the bound: that rule rests on Keras'
code (quoted in `service/rnnserve/mc_dropout.py`) and on the mask shapes checked below.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _within_bounds(case: dict[str, Any], samples: Samples) -> tuple[float, float]:
    """The worst |difference| / bound over the elements of every output, for the mean and for the variance (<= 1
    passes)."""
    data = arrays(case)
    k = case["samples"]
    worst = [0.0, 0.0]
    for index, values in enumerate(samples.outputs.values()):
        mean, var, m4 = _moments(values.astype(np.float64))
        var_k, m4_k = data[f"var_{index}"], data[f"m4_{index}"]
        mean_bound = Z * np.sqrt(var_k / k + var / SAMPLES) + 1e-7
        var_bound = Z * np.sqrt(np.maximum(m4_k - var_k**2, 0) / k + np.maximum(m4 - var**2, 0) / SAMPLES)
        worst[0] = max(worst[0], float(np.max(np.abs(mean - data[f"mean_{index}"]) / mean_bound)))
        worst[1] = max(worst[1], float(np.max(np.abs(var - var_k) / (var_bound + 1e-9))))
    return worst[0], worst[1]


@pytest.mark.parametrize("runner", ["reference", "onnxruntime"])
@pytest.mark.parametrize("tcase", DROPOUT_CASES, ids=[c["id"] for c in DROPOUT_CASES])
def test_mean_and_variance_agree_with_keras_training_calls(tcase: dict[str, Any], runner: str) -> None:
    assert tcase["samples"] >= 1000
    x = arrays(tcase)["in_x"]
    samples = _run(runner, tcase, x, DropoutRequest(SAMPLES, 0))
    mean_ratio, var_ratio = _within_bounds(tcase, samples)
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
    assert max(_within_bounds(case, samples)) > 1.0


Get = Callable[..., np.ndarray]  # MaskSource.get


def _backward_as_forward(get: Get, source: Any, name: str, shape: Any, rate: float, same_as: str | None) -> np.ndarray:
    return get(source, name, shape, rate, name.replace("/backward", "/forward") if "/backward" in name else same_as)


def _ones_for(part: str) -> Callable[..., np.ndarray]:
    def rule(get: Get, source: Any, name: str, shape: Any, rate: float, same_as: str | None) -> np.ndarray:
        mask = get(source, name, shape, rate, same_as)
        return np.ones_like(mask) if part in name else mask

    return rule


WRAPPER_RULES: dict[str, tuple[str, Callable[..., np.ndarray] | None]] = {
    # (case, wrong MaskSource.get; None: tf_keras' fused path taken for a Keras 3 one)
    "seeded directions drawn apart": ("k3_mc_dropout_bidi", lambda get, s, n, shape, r, same: get(s, n, shape, r)),
    "unseeded directions sharing masks": ("k3_mc_dropout_bidi", _backward_as_forward),
    "tf_keras' fused LSTM with one input mask a sequence": ("k2_mc_dropout_bidi", None),
    "a stacked cell's input masks left out": ("k3_mc_dropout_cells", _ones_for("rnn/lstm_cell/dropout")),
    "a stacked cell's input masks left out, tf_keras": ("k2_mc_dropout_cells", _ones_for("rnn/gru_cell/dropout")),
    "a Bidirectional's backward stacked cells left out": ("k2_mc_dropout_cells", _ones_for("/backward/")),
}


@pytest.mark.parametrize("rule", list(WRAPPER_RULES))
def test_the_bound_catches_a_wrong_rule_for_bidirectional_and_stacked_cells(
    monkeypatch: pytest.MonkeyPatch, rule: str
) -> None:
    """Each rule measured in Keras (`rnnserve.mc_dropout`'s docstring) matters to these fixtures' statistics: the
    rule changed, some element's mean or variance moves past its bound (by 2 to 35 bounds, where the right rule
    stays within 0.6)."""
    from rnnserve import mc_dropout
    from rnnserve.export import dropout as export_dropout

    case_id, wrong = WRAPPER_RULES[rule]
    case = next(c for c in DROPOUT_CASES if c["id"] == case_id)
    if wrong is None:
        monkeypatch.setattr(export_dropout, "fused_keras2", lambda *args: False)
    else:
        original = mc_dropout.MaskSource.get

        def get(
            self: mc_dropout.MaskSource, name: str, shape: tuple[int, ...], rate: float, same_as: str | None = None
        ) -> np.ndarray:
            return wrong(original, self, name, shape, rate, same_as)

        monkeypatch.setattr(mc_dropout.MaskSource, "get", get)
    x = arrays(case)["in_x"]
    samples = run_samples(_reference(case), {"x": x}, None, None, DropoutRequest(SAMPLES, 0))
    assert max(_within_bounds(case, samples)) > 1.0


@pytest.mark.parametrize("tcase", DROPOUT_CASES, ids=[c["id"] for c in DROPOUT_CASES])
def test_masks_of_ones_give_the_inference_output_of_onnxruntime(tcase: dict[str, Any]) -> None:
    spec = load_spec(TRAINING / tcase["file"], name=tcase["id"])
    reference = ReferenceModel(spec)
    x = arrays(tcase)["in_x"]
    drawn = run_samples(reference, {"x": x}, None, None, DropoutRequest(3, 7)).masks
    ones = {name: np.ones_like(mask) for name, mask in drawn.items()}
    samples = run_samples(reference, {"x": x}, None, None, DropoutRequest(3, 7), masks=ones)
    plain = OrtModel(spec).run({"x": x})
    for k, (name, value) in enumerate(samples.outputs.items()):
        for n in range(3):
            assert_close(value[n], plain.outputs[name], f"sample {n} of {name} with masks of ones")
            assert_close(value[n], arrays(tcase)[f"out_{k}"], f"sample {n} of {name} against Keras' inference output")


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


def _masks_of(case_id: str) -> dict[str, np.ndarray]:
    case = next(c for c in DROPOUT_CASES if c["id"] == case_id)
    return run_samples(_reference(case), {"x": arrays(case)["in_x"]}, None, None, DropoutRequest(4, 0)).masks


def test_bidirectional_masks_follow_the_measured_rules() -> None:
    rows = 8  # 4 samples of a batch of 2
    masks = _masks_of("k3_mc_dropout_bidi")
    shapes = {k: v.shape for k, v in masks.items()}
    for direction in ("forward", "backward"):
        assert shapes[f"bi/{direction}/dropout"] == shapes[f"bi/{direction}/recurrent_dropout"] == (3, rows, 3)
        assert shapes[f"bi_seeded/{direction}/dropout"] == (4, rows, 3)  # its input: `bi`'s average, 3 wide
        assert shapes[f"bi_seeded/{direction}/recurrent_dropout"] == (4, rows, 2)
    for kind in ("dropout", "recurrent_dropout"):
        assert not np.array_equal(masks[f"bi/forward/{kind}"], masks[f"bi/backward/{kind}"])  # drawn apart
        assert np.array_equal(masks[f"bi_seeded/forward/{kind}"], masks[f"bi_seeded/backward/{kind}"])  # seeded
    masks = _masks_of("k2_mc_dropout_bidi")
    assert masks["bi/forward/dropout"].shape == (3, rows, 3)
    fused = masks["bi_fused/forward/dropout"]  # tf_keras' fused LSTM: the input's shape, each timestep its own
    assert fused.shape == masks["bi_fused/backward/dropout"].shape == (rows, 5, 3)
    assert not np.array_equal(fused[:, 0], fused[:, 1]) and not np.array_equal(
        fused, masks["bi_fused/backward/dropout"]
    )


def test_stacked_cells_masks_follow_the_measured_rules() -> None:
    rows = 8
    shapes = {k: v.shape for k, v in _masks_of("k3_mc_dropout_cells").items()}
    assert list(shapes.items())[:4] == [
        ("rnn/gru_cell/dropout", (3, rows, 3)),  # on the layer's input, one per gate (recurrent_dropout > 0)
        ("rnn/gru_cell/recurrent_dropout", (3, rows, 4)),
        ("rnn/simple_rnn_cell/recurrent_dropout", (1, rows, 3)),
        ("rnn/lstm_cell/dropout", (1, rows, 3)),  # on the SimpleRNN cell's output, one the gates share
    ]
    for direction in ("forward", "backward"):
        assert shapes[f"bi/{direction}/gru_cell/dropout"] == (3, rows, 2)
        assert shapes[f"bi/{direction}/lstm_cell/recurrent_dropout"] == (4, rows, 2)
    shapes = {k: v.shape for k, v in _masks_of("k2_mc_dropout_cells").items()}
    assert shapes["rnn/lstm_cell/dropout"] == (4, rows, 3) and shapes["rnn/gru_cell/dropout"] == (1, rows, 3)
    assert shapes["bi/backward/simple_rnn_cell/dropout"] == (1, rows, 2)  # a cell: no fused path in tf_keras


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
