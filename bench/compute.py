"""The compute limit: onnxruntime alone on the graph the server runs for one step (T=1), in this process.

    python -m bench.compute MODELS_DIR [--seconds 1] [--batches 1,64]

The graph is the one `OrtModel` builds for one-timestep chunks (the spec exported unrolled with T=1), in an
`InferenceSession` with the server's options (one intra-op and one inter-op thread, sequential, all graph
optimisations). Prints one JSON object: for each batch size, microseconds per call and steps per second
(rows x calls / s), from calls of `InferenceSession.run` with feeds made once.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.bench_model import MODEL_NAME
from service.export.convert import to_onnx
from service.export.package import read_package
from service.runtime.signature import MASK_INPUT, ModelSignature


def step_session(models: Path) -> tuple[ort.InferenceSession, ModelSignature]:
    """The one-step graph of the bench model in a session configured as the server configures its own."""
    package = read_package(models / MODEL_NAME)
    proto, _ = to_onnx(package.spec, unroll=True, time_steps=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, package.signature


def step_feeds(sig: ModelSignature, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {info.name: rng.standard_normal((batch, 1, *info.shape[2:])).astype(np.float32) for info in sig.inputs}
    feeds[MASK_INPUT] = np.ones((batch, 1), dtype=bool)
    for state in sig.states:
        feeds[state.name] = np.zeros((batch, int(state.shape[-1] or 0)), dtype=np.float32)
    return feeds


def per_call_seconds(session: ort.InferenceSession, feeds: dict[str, np.ndarray], seconds: float) -> float:
    """Mean time per call over as many calls as fit in `seconds`, after a short warmup."""
    names = [o.name for o in session.get_outputs()]
    for _ in range(50):
        session.run(names, feeds)
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(100):
            session.run(names, feeds)
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return (now - started) / calls


def measure(models: Path, batches: Sequence[int], seconds: float) -> dict[str, dict[str, float]]:
    session, sig = step_session(models)
    rng = np.random.default_rng(0)
    results = {}
    for batch in batches:
        call = per_call_seconds(session, step_feeds(sig, batch, rng), seconds)
        results[str(batch)] = {"us_per_call": call * 1e6, "steps_per_s": batch / call}
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--batches", default="1,64")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    print(json.dumps(measure(args.models, batches, args.seconds)))


if __name__ == "__main__":
    main()
