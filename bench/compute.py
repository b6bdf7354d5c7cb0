"""The compute limit: onnxruntime alone on the graphs the server runs, in this process.

    python -m bench.compute MODELS_DIR [--seconds 1] [--batches 1,64] [--sequences 32x100] [--provider cpu|cuda]

For one-timestep chunks the graph is the one `OrtModel` builds for them (the spec exported unrolled with T=1);
for whole sequences (`--sequences BxT,...`, case (e)'s predict) it is the general graph (a Scan over time). Each
runs in an `InferenceSession` with the server's options (one intra-op and one inter-op thread, sequential, all
graph optimisations, the server's CUDA options). Prints one JSON object: for each batch size (and "BxT"
sequence), microseconds per call and timesteps per second (rows x timesteps x calls / s), from calls of
`InferenceSession.run` with feeds made once (host arrays in and out, as the server calls it).
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
from rnnserve.export.convert import to_onnx
from rnnserve.export.package import read_package
from rnnserve.runtime.ort_model import RuntimeOptions, new_session, resolve_providers
from rnnserve.runtime.runner import MASK_INPUT
from rnnserve.signature import ModelSignature


def step_session(
    models: Path, provider: str = "cpu", *, steps: int | None = 1
) -> tuple[ort.InferenceSession, ModelSignature]:
    """The bench model's one-step graph (`steps=1`), or with `steps=None` its general graph, in a session
    configured as the server configures its own."""
    package = read_package(models / MODEL_NAME)
    proto, _ = to_onnx(package.spec, unroll=steps is not None, time_steps=steps)
    options = RuntimeOptions(provider=provider)  # type: ignore[arg-type]
    return new_session(proto.SerializeToString(), options, resolve_providers(provider)), package.signature


def step_feeds(sig: ModelSignature, batch: int, rng: np.random.Generator, steps: int = 1) -> dict[str, np.ndarray]:
    feeds = {info.name: rng.standard_normal((batch, steps, *info.shape[2:])).astype(np.float32) for info in sig.inputs}
    feeds[MASK_INPUT] = np.ones((batch, steps), dtype=bool)
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


def measure(
    models: Path,
    batches: Sequence[int],
    seconds: float,
    provider: str = "cpu",
    sequences: Sequence[tuple[int, int]] = (),
) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    results = {}
    session, sig = step_session(models, provider)
    for batch in batches:
        call = per_call_seconds(session, step_feeds(sig, batch, rng), seconds)
        results[str(batch)] = {"us_per_call": call * 1e6, "steps_per_s": batch / call}
    if sequences:
        session, sig = step_session(models, provider, steps=None)
        for batch, steps in sequences:
            call = per_call_seconds(session, step_feeds(sig, batch, rng, steps), seconds)
            results[f"{batch}x{steps}"] = {"us_per_call": call * 1e6, "steps_per_s": batch * steps / call}
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--sequences", default="", help="whole sequences BxT,... on the general graph")
    parser.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    sequences = [(int(b), int(t)) for b, _, t in (s.partition("x") for s in args.sequences.split(",") if s)]
    print(json.dumps(measure(args.models, batches, args.seconds, args.provider, sequences)))


if __name__ == "__main__":
    main()
