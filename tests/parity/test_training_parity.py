"""The training-time API against real Keras, in process: per-layer `reset_states()` replayed on the numpy
reference and on onnxruntime, weight penalties and constraints from the model file, activity penalties of a call.
(`tests/service/test_training_api.py` replays the same fixtures through the HTTP API.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from parity_harness import assert_close
from training_fixtures import TRAINING, arrays, cases_of, reset_values

from rnnserve import penalties
from rnnserve.importers import load_spec
from rnnserve.inference import reset_states
from rnnserve.runtime.runner import Runner
from rnnserve.signature import signature_from_spec
from rnnserve.spec import ModelSpec

RESET_CASES = cases_of("reset")
PENALTY_CASES = cases_of("penalties")
RTOL = 1e-5


def _spec(case: dict[str, Any]) -> ModelSpec:
    return load_spec(TRAINING / case["file"], name=case["id"])


def _runner(spec: ModelSpec, engine: str) -> Runner:
    if engine == "reference":
        from rnnserve.layers.model import ReferenceModel

        return ReferenceModel(spec)
    from rnnserve.runtime.ort_model import OrtModel

    return OrtModel(spec)


def test_the_fixtures_cover_both_keras_versions() -> None:
    assert {c["keras_version"][0] for c in RESET_CASES} == {"2", "3"}
    assert {c["keras_version"][0] for c in PENALTY_CASES} == {"2", "3"}


@pytest.mark.parametrize("tcase", RESET_CASES, ids=[c["id"] for c in RESET_CASES])
def test_per_layer_reset_matches_keras(tcase: dict[str, Any], engine: str) -> None:
    spec = _spec(tcase)
    sig = signature_from_spec(spec)
    assert [s.name for s in sig.states] == tcase["states"]
    runner = _runner(spec, engine)
    data = arrays(tcase)
    batch = data["b0_in_x"].shape[0]
    states = [np.zeros((batch, int(s.shape[1] or 0)), np.float32) for s in sig.states]
    for j, step in enumerate(tcase["batches"]):
        if step["reset"] != "none":
            values = reset_values(tcase, data, j)
            states = list(reset_states(sig, states, batch, values, [step["layer"]]))
        result = runner.run({"x": data[f"b{j}_in_x"]}, states=states)
        assert_close(result.outputs[sig.outputs[0].name], data[f"b{j}_out_0"], f"batch {j} output")
        for i, state in enumerate(result.states):
            assert_close(state, data[f"b{j}_state_{i}"], f"batch {j} state {tcase['states'][i]}")
        states = result.states


@pytest.mark.parametrize("tcase", PENALTY_CASES, ids=[c["id"] for c in PENALTY_CASES])
def test_weight_penalties_match_keras_model_losses(tcase: dict[str, Any]) -> None:
    report = penalties.weight_penalties(_spec(tcase))
    assert report["total"] == pytest.approx(tcase["weights_total"], rel=RTOL)
    by_layer = {entry["layer"]: entry["total"] for entry in report["layers"]}
    assert by_layer == pytest.approx(tcase["weights_by_layer"], rel=RTOL)


@pytest.mark.parametrize("tcase", PENALTY_CASES, ids=[c["id"] for c in PENALTY_CASES])
def test_constraints_are_judged_as_keras_projects(tcase: dict[str, Any]) -> None:
    report = penalties.constraint_report(_spec(tcase))
    got = {(e["layer"], e["weight"]): e for e in report}
    want = {(e["layer"], e["weight"]): e["keras_satisfied"] for e in tcase["constraints"]}
    assert set(got) == set(want)
    for key, satisfied in want.items():
        assert got[key]["satisfied"] is satisfied, (key, got[key])
        assert (got[key]["worst_violation"] > penalties.CONSTRAINT_TOLERANCE) is not satisfied


@pytest.mark.parametrize("tcase", PENALTY_CASES, ids=[c["id"] for c in PENALTY_CASES])
def test_activity_penalties_of_a_call_match_keras(tcase: dict[str, Any]) -> None:
    from rnnserve.layers.model import ReferenceModel

    spec = _spec(tcase)
    data = arrays(tcase)
    x = data["in_x"].astype(np.int64 if data["in_x"].dtype.kind == "i" else np.float32)
    result, layer_outputs = ReferenceModel(spec).run_layers({"x": x})
    for k, info in enumerate(signature_from_spec(spec).outputs):
        assert_close(result.outputs[info.name], data[f"out_{k}"], f"output {k}")
    losses = penalties.call_losses(spec, layer_outputs, penalties.weight_penalties(spec))
    assert losses["total"] == pytest.approx(tcase["total"], rel=RTOL)
    assert losses["activity"] == pytest.approx(tcase["total"] - tcase["weights_total"], rel=1e-4, abs=1e-7)
    by_layer = {e["layer"]: e.get("weights", 0.0) + e.get("activity", 0.0) for e in losses["layers"]}
    assert by_layer == pytest.approx(tcase["by_layer"], rel=RTOL)


def test_constraint_violations_in_their_own_units() -> None:
    from rnnserve.modeling import constraints as con

    w = np.array([[3.0, 0.0], [4.0, 0.5]])  # column norms 5 and 0.5
    assert penalties.constraint_violation(con.MaxNorm(2.0), w) == pytest.approx(3.0)
    assert penalties.constraint_violation(con.MaxNorm(6.0), w) == 0.0
    assert penalties.constraint_violation(con.MinMaxNorm(1.0, 6.0), w) == pytest.approx(0.5)
    assert penalties.constraint_violation(con.UnitNorm(axis=0), w) == pytest.approx(4.0)
    assert penalties.constraint_violation(con.NonNeg(), -w) == pytest.approx(4.0)
