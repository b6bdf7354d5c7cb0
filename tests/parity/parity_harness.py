"""Parity harness: the cases real Keras computed (`fixtures/cases.json`, written by `make_fixtures.py`), how to
feed them to rnnserve's runners, and the one tolerance check. No Keras here: only the committed files and numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from graph_provider import runtime_options, session_providers

from rnnserve.runtime.runner import MASK_INPUT, STATE_OUT_SUFFIX, Runner, RunResult
from rnnserve.signature import ModelSignature, signature_from_spec
from rnnserve.spec import ModelSpec

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ATOL = 1e-5
RTOL = 1e-5
LOOP_OPS = frozenset({"Scan", "Loop"})


@dataclass(frozen=True)
class ParityCase:
    """One model file of `cases.json` and the Keras numbers for it."""

    id: str
    file: Path
    format: str
    data_file: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_outputs: Mapping[str, int]
    stream: bool
    stateful: Mapping[str, Any] | None
    notes: str

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], folder: Path = FIXTURES) -> ParityCase:
        return cls(
            id=entry["id"],
            file=folder / entry["file"],
            format=entry["format"],
            data_file=folder / entry["data"],
            input_names=tuple(i["name"] for i in entry["inputs"]),
            output_names=tuple(entry["outputs"]),
            state_outputs=dict(entry["state_outputs"]),
            stream=bool(entry["stream"]),
            stateful=entry.get("stateful"),
            notes=entry["notes"],
        )

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.data_file, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def keras_outputs(self, prefix: str = "") -> list[np.ndarray]:
        return [self.arrays[f"{prefix}out_{k}"] for k in range(len(self.output_names))]

    def __str__(self) -> str:
        return self.id


# The case indexes in `make_fixtures.py`'s format, one per fixture script (`make_fixtures_cells.py` writes cells/).
CASE_INDEXES = ("cases.json", "cells/cases.json")


def load_cases() -> list[ParityCase]:
    """Every case of the `CASE_INDEXES`, file names relative to their index."""
    cases = []
    for path in (FIXTURES / index for index in CASE_INDEXES):
        index = json.loads(path.read_text())
        cases += [ParityCase.from_entry(entry, path.parent) for entry in index["cases"]]
    return cases


# ------------------------------------------------------------------------------------------------- comparisons


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Assert |actual - expected| <= ATOL + RTOL*|expected| everywhere; report the worst violation."""
    got = np.asarray(actual, dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, Keras has {want.shape}")
    excess = np.abs(got - want) - (ATOL + RTOL * np.abs(want))
    excess = np.where(np.isnan(excess), np.inf, excess)
    bad = excess > 0
    if bad.any():
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values out of tolerance; max |d| = "
            f"{float(np.nanmax(np.abs(got - want))):.3g}; worst at {tuple(int(i) for i in worst)}: "
            f"got {got[worst]:.7g}, Keras {want[worst]:.7g} (allowed {ATOL + RTOL * abs(want[worst]):.2g})"
        )


def state_index(signature: ModelSignature, name: str) -> int:
    names = [s.name for s in signature.states]
    if name not in names:
        raise AssertionError(f"state {name!r} is not in the signature's states {names}")
    return names.index(name)


# ---------------------------------------------------------------------------------------------- feeding a case


@dataclass(frozen=True)
class Feed:
    """What one run of a case gets: inputs in signature order and dtypes, explicit states and mask."""

    inputs: dict[str, np.ndarray]
    states: list[np.ndarray] | None
    mask: np.ndarray | None


def case_feed(case: ParityCase, signature: ModelSignature, prefix: str = "") -> Feed:
    """The Keras inputs of `case` as a runner takes them. Initial-state model inputs become `states`."""
    arrays = case.arrays
    inputs = {}
    for info in signature.inputs:
        key = f"{prefix}in_{info.name}"
        if key not in arrays:
            raise AssertionError(f"signature input {info.name!r} is not a Keras input of {case.id} {case.input_names}")
        inputs[info.name] = arrays[key].astype(info.dtype)
    states = None
    if signature.initial_state_inputs:
        batch = batch_size(signature, inputs)
        states = [
            arrays[f"{prefix}in_{signature.initial_state_inputs[s.name]}"]
            if s.name in signature.initial_state_inputs
            else np.zeros((batch, int(s.shape[1] or 0)), np.float32)
            for s in signature.states
        ]
    return Feed(inputs, states, arrays.get("mask"))


def batch_size(signature: ModelSignature, inputs: Mapping[str, np.ndarray]) -> int:
    first = inputs[signature.inputs[0].name]
    return int(first.shape[1] if signature.time_major else first.shape[0])


def time_steps(signature: ModelSignature, inputs: Mapping[str, np.ndarray]) -> int:
    first = inputs[signature.inputs[0].name]
    return int(first.shape[0] if signature.time_major else first.shape[1])


def run_feed(runner: Runner, feed: Feed) -> RunResult:
    return runner.run(feed.inputs, states=feed.states, mask=feed.mask)


# -------------------------------------------------------------------------------------------------- ONNX graphs


def graph_ops(graph: onnx.GraphProto) -> Iterator[str]:
    """Every op type in a graph, subgraphs (Scan/Loop/If bodies) included."""
    for node in graph.node:
        yield node.op_type
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from graph_ops(attribute.g)
            for sub in attribute.graphs:
                yield from graph_ops(sub)


class GraphRunner:
    """Runs one exported graph directly on an InferenceSession, by the graph I/O contract of `to_onnx`:
    signature inputs, `mask` (bool (batch, time), all True when none), one input per state named as the state;
    outputs the signature outputs, then `state + ":out"` per state."""

    def __init__(self, model: onnx.ModelProto, signature: ModelSignature) -> None:
        self.model = model
        self._signature = signature
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=session_providers())

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        states: Sequence[np.ndarray] | None = None,
        mask: np.ndarray | None = None,
    ) -> RunResult:
        sig = self._signature
        batch, steps = batch_size(sig, inputs), time_steps(sig, inputs)
        feeds = dict(inputs)
        feeds[MASK_INPUT] = np.ones((batch, steps), bool) if mask is None else np.asarray(mask, bool)
        for i, info in enumerate(sig.states):
            value = np.zeros((batch, int(info.shape[1] or 0))) if states is None else states[i]
            feeds[info.name] = np.asarray(value, np.float32)
        names = [o.name for o in sig.outputs] + [s.name + STATE_OUT_SUFFIX for s in sig.states]
        values = dict(zip(names, self.session.run(names, feeds), strict=True))
        return RunResult(
            {o.name: values[o.name] for o in sig.outputs}, [values[s.name + STATE_OUT_SUFFIX] for s in sig.states]
        )


# ------------------------------------------------------------------------------------------------------ harness


class Parity:
    """Loads each fixture model once and builds its runners on demand."""

    def __init__(self) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self._runners: dict[tuple[str, str], Runner] = {}

    def spec(self, case: ParityCase) -> ModelSpec:
        if case.id not in self._specs:
            from rnnserve.importers import load_spec

            self._specs[case.id] = load_spec(case.file)
        return self._specs[case.id]

    def runner(self, case: ParityCase, engine: str) -> Runner:
        key = (case.id, engine)
        if key not in self._runners:
            self._runners[key] = self._build(case, engine)
        return self._runners[key]

    def _build(self, case: ParityCase, engine: str) -> Runner:
        spec = self.spec(case)
        if engine == "reference":
            from rnnserve.layers.model import ReferenceModel

            return ReferenceModel(spec)
        if engine == "onnx":
            from rnnserve.runtime.ort_model import OrtModel

            return OrtModel(spec, runtime_options())
        raise ValueError(f"unknown engine {engine!r}")

    def signature(self, case: ParityCase) -> ModelSignature:
        return signature_from_spec(self.spec(case))

    def graph(self, case: ParityCase, *, unroll: bool, steps: int) -> GraphRunner:
        """`to_onnx(spec, unroll=...)` run directly (unrolled graphs are built for `steps` time steps)."""
        from rnnserve.export.convert import to_onnx

        model, signature = to_onnx(self.spec(case), unroll=unroll, time_steps=steps if unroll else None)
        return GraphRunner(model, signature)
