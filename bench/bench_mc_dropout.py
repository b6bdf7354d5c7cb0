"""Plain steps with Monte-Carlo dropout available: what the dropout graph costs a model that never asks for it.

    python -m bench.bench_mc_dropout [--seconds 1] [--rounds 5] [--samples 100]

The model is the bench model (SimpleRNN(128) over 32 features, `bench_model.py`) with `dropout=0.2` and
`recurrent_dropout=0.2`, run by `OrtModel` as the server runs it (one thread, the server's session options). Prints
one JSON object:

* `graphs`: the SHA-256 of the default graphs the exporter writes for it (the general one and the one-timestep one)
  and for the bench model without rates. Run under the code of an earlier commit (`PYTHONPATH=<its service folder>`,
  which comes before the editable install) they must be the same digests: the default graphs are untouched, so
  onnxruntime runs the same plain step.
* `step_us`: microseconds per `OrtModel.run` of one timestep (the session step's call), batch 1 and 64, median over
  rounds of `--seconds` each; `before` any dropout request, and `after` one (its dropout graphs built and held in
  the same object). Under older code only `before` is measured.
* `dropout_ms` (newer code only): one request of `--samples` samples over batch 1, T=1 and T=20, on onnxruntime
  (the dropout graph) and on the numpy reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.bench_model import FEATURES, bench_spec
from rnnserve.export.convert import to_onnx
from rnnserve.runtime.ort_model import OrtModel, RuntimeOptions
from rnnserve.spec import ModelSpec


def with_rates(spec: ModelSpec, dropout: float = 0.2, recurrent_dropout: float = 0.2) -> ModelSpec:
    layers = tuple(
        dataclasses.replace(layer, config={**layer.config, "dropout": dropout, "recurrent_dropout": recurrent_dropout})
        for layer in spec.layers
    )
    return dataclasses.replace(spec, layers=layers)


def digests(spec: ModelSpec) -> dict[str, str]:
    general = to_onnx(spec)[0].SerializeToString()
    step = to_onnx(spec, unroll=True, time_steps=1)[0].SerializeToString()
    return {"general": hashlib.sha256(general).hexdigest(), "step": hashlib.sha256(step).hexdigest()}


def per_call_us(call: Callable[[], Any], seconds: float) -> float:
    call()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        call()
        calls += 1
    return elapsed / calls * 1e6


def step_timings(model: OrtModel, rounds: int, seconds: float) -> dict[str, float]:
    rng = np.random.default_rng(0)
    out = {}
    for batch in (1, 64):
        x = rng.standard_normal((batch, 1, FEATURES)).astype(np.float32)
        states = [np.zeros((batch, int(s.shape[1] or 0)), np.float32) for s in model.signature.states]
        times = [per_call_us(lambda x=x, states=states: model.run({"x": x}, states), seconds) for _ in range(rounds)]
        out[f"batch_{batch}"] = round(statistics.median(times), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    spec = with_rates(bench_spec())
    model = OrtModel(spec, RuntimeOptions())
    result: dict[str, Any] = {
        "graphs": {"with_rates": digests(spec), "without_rates": digests(bench_spec())},
        "step_us": {"before": step_timings(model, args.rounds, args.seconds)},
    }
    if hasattr(model, "run_with_masks"):
        from rnnserve.layers.model import ReferenceModel
        from rnnserve.mc_dropout import DropoutRequest, run_samples, run_samples_ort

        reference = ReferenceModel(spec)
        request = DropoutRequest(args.samples, 0)
        dropout_ms = {}
        for steps in (1, 20):
            x = {"x": np.random.default_rng(1).standard_normal((1, steps, FEATURES)).astype(np.float32)}
            ort_us = per_call_us(lambda x=x: run_samples_ort(model, x, None, None, request), args.seconds)
            ref_us = per_call_us(lambda x=x: run_samples(reference, x, None, None, request), args.seconds)
            dropout_ms[f"T{steps}"] = {"onnxruntime": round(ort_us / 1e3, 3), "reference": round(ref_us / 1e3, 3)}
        result["dropout_ms"] = {"samples": args.samples, **dropout_ms}
        result["step_us"]["after"] = step_timings(model, args.rounds, args.seconds)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
