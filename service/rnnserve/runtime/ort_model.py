"""`OrtModel`: a `Runner` on onnxruntime, with the same call shape as the numpy reference.

One model can hold more than one graph of the same spec, all computing the same numbers:

* the *general* graph, as the spec's layers ask (`Scan` over a free time axis, or an unrolled chain when the
  Keras layers said `unroll=True`; an unrolled graph only takes its own T, other lengths use a Scan variant);
* a *step* graph for T = 1, unrolled (one cell application, no loop), the hot path of a stream.

Variants are built lazily the first time a length needs one, under a lock, and kept. So are the Monte-Carlo
dropout graphs (`rnnserve.export.dropout`: the same graphs, taking the dropout masks as extra inputs), built the
first time a request asks for dropout (`run_with_masks`), in the same forms and on the same execution provider;
`run` never reads them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from rnnserve.errors import InvalidArgument, InvalidInput
from rnnserve.runtime.runner import MASK_INPUT, STATE_OUT_SUFFIX, Feeds, RunResult
from rnnserve.signature import ModelSignature
from rnnserve.spec import ModelSpec

log = logging.getLogger(__name__)

Provider = Literal["cpu", "cuda", "auto"]


@dataclass(frozen=True)
class RuntimeOptions:
    provider: Provider = "cpu"
    intra_op_threads: int = 1  # 0 = onnxruntime's default (all cores)
    inter_op_threads: int = 1
    step_graph: bool = True  # build the unrolled T=1 graph for streams


CUDA_OPTIONS = {"use_tf32": "0"}
"""The CUDA execution provider's options. onnxruntime turns TF32 on by default on Ampere and newer GPUs: float32
matrix products then round their inputs to 10 bits of mantissa. Measured on an H200, an LSTM(1024) over 512 features
put 88% of its outputs beyond Keras parity's 1e-5 + 1e-5|y| with TF32 (max |d| 3.7e-4) and none without it (max
|d| 4.2e-7); the small parity fixtures pass either way. Off, as Keras computes in float32."""


def resolve_providers(provider: str) -> list[str]:
    """onnxruntime execution providers for `cpu`, `cuda` or `auto` (CUDA when available, else CPU)."""
    available = ort.get_available_providers()
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise InvalidArgument(
                f"provider='cuda' but onnxruntime offers {available}: install onnxruntime-gpu and check the GPU"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if provider == "auto":
        chosen = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if "CUDAExecutionProvider" in available
            else ["CPUExecutionProvider"]
        )
        log.info("provider=auto chose %s (available: %s)", chosen[0], available)
        return chosen
    raise InvalidArgument(f"provider must be 'cpu', 'cuda' or 'auto', got {provider!r}")


def with_options(providers: Sequence[str]) -> list[str | tuple[str, dict[str, str]]]:
    """`providers` as `InferenceSession` takes them, each with its options (`CUDA_OPTIONS` for CUDA)."""
    return [(name, CUDA_OPTIONS) if name == "CUDAExecutionProvider" else name for name in providers]


def new_session(model_bytes: bytes, options: RuntimeOptions, providers: Sequence[str]) -> ort.InferenceSession:
    """An `InferenceSession` configured as the server runs every graph (`providers` from `resolve_providers`)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, sess_options=so, providers=with_options(providers))


class _Graph:
    """One InferenceSession and the names it feeds."""

    def __init__(self, model_bytes: bytes, options: RuntimeOptions, providers: list[str]) -> None:
        self.session = new_session(model_bytes, options, providers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        time_dims = [i.shape[1] for i in self.session.get_inputs() if i.name == MASK_INPUT]
        self.fixed_time = time_dims[0] if time_dims and isinstance(time_dims[0], int) else None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {k: v for k, v in feeds.items() if k in self.input_names})
        return dict(zip(self.output_names, values, strict=True))


class OrtModel:
    """Runs a `ModelSpec` on onnxruntime.

    An exported package passes its graph and signature (`model_path`, `signature`) so nothing is exported again.
    """

    def __init__(
        self,
        spec: ModelSpec,
        options: RuntimeOptions | None = None,
        *,
        model_path: Path | None = None,
        signature: ModelSignature | None = None,
    ) -> None:
        from rnnserve.export.convert import to_onnx  # the exporter is only needed when a graph is built

        self._to_onnx = to_onnx
        self.spec = spec
        self.options = options or RuntimeOptions()
        self.providers = resolve_providers(self.options.provider)
        if model_path is not None and signature is not None:
            model_bytes = Path(model_path).read_bytes()
            self._signature = signature
        else:
            proto, self._signature = to_onnx(spec)
            model_bytes = proto.SerializeToString()
        self._general = _Graph(model_bytes, self.options, self.providers)
        self._variants: dict[int, _Graph] = {}
        self._lock = threading.Lock()
        self._dropout_graphs: dict[int | None, _Graph] = {}  # key: as `_dropout_graph` picks it
        self._dropout_lock = threading.Lock()  # its own: building one never holds up a plain call's variant
        if self.options.step_graph and self._signature.states and self._general.fixed_time != 1:
            self._variants[1] = self._build(unroll=True, time_steps=1)

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    @property
    def active_provider(self) -> str:
        return str(self._general.session.get_providers()[0])

    def _build(self, *, unroll: bool, time_steps: int | None) -> _Graph:
        proto, _ = self._to_onnx(self.spec, unroll=unroll, time_steps=time_steps)
        return _Graph(proto.SerializeToString(), self.options, self.providers)

    def _graph_for(self, time_steps: int) -> _Graph:
        if time_steps in self._variants:
            return self._variants[time_steps]
        fixed = self._general.fixed_time
        if fixed is None or fixed == time_steps:
            return self._general
        with self._lock:  # an unrolled general graph of another length: a Scan graph serves every other length
            if 0 not in self._variants:
                self._variants[0] = self._build(unroll=False, time_steps=None)
        return self._variants[0]

    def _feeds(
        self, inputs: Feeds, states: Sequence[np.ndarray] | None, mask: np.ndarray | None
    ) -> tuple[dict[str, np.ndarray], int]:
        """A call's feeds (inputs, the Keras mask, the states: zeros, or an initial-state input's value, when not
        given) and its timesteps."""
        sig = self._signature
        batch, time_steps = self._batch_and_time(inputs)
        feeds: dict[str, np.ndarray] = {name: np.asarray(value) for name, value in inputs.items()}
        feeds[MASK_INPUT] = (
            np.ones((batch, time_steps), dtype=bool) if mask is None else np.ascontiguousarray(mask, dtype=bool)
        )
        if states is None:
            states = [
                np.asarray(feeds[sig.initial_state_inputs[s.name]], dtype=np.float32)
                if s.name in sig.initial_state_inputs and sig.initial_state_inputs[s.name] in feeds
                else np.zeros((batch, int(s.shape[1] or 0)), dtype=np.float32)
                for s in sig.states
            ]
        if len(states) != len(sig.states):
            raise InvalidInput(
                f"expected {len(sig.states)} state arrays ({[s.name for s in sig.states]}), got {len(states)}"
            )
        for info, value in zip(sig.states, states, strict=True):
            feeds[info.name] = np.ascontiguousarray(value, dtype=np.float32)
        return feeds, time_steps

    def run(
        self, inputs: Feeds, states: Sequence[np.ndarray] | None = None, mask: np.ndarray | None = None
    ) -> RunResult:
        sig = self._signature
        feeds, time_steps = self._feeds(inputs, states, mask)
        result = self._graph_for(time_steps).run(feeds)
        return RunResult(
            outputs={o.name: result[o.name] for o in sig.outputs},
            states=[result[s.name + STATE_OUT_SUFFIX] for s in sig.states],
        )

    # ---- Monte-Carlo dropout (rnnserve.mc_dropout) ----------------------------------------------------------------

    def _dropout_graph(self, time_steps: int) -> _Graph:
        """The dropout graph for `time_steps`: unrolled for one step where `run` has a step graph for that length,
        else as the spec's layers ask (for the general graph's fixed T, if it has one), a Scan when the general graph
        is unrolled for another length. Built the first time, under a lock of its own."""
        fixed = self._general.fixed_time
        key: int | None = time_steps  # the step graph's form
        if time_steps not in self._variants:
            key = None if fixed is None or fixed == time_steps else 0  # the general graph's, or a Scan
        graph = self._dropout_graphs.get(key)
        if graph is not None:
            return graph
        with self._dropout_lock:
            graph = self._dropout_graphs.get(key)
            if graph is None:
                unroll, steps = (None, fixed) if key is None else (False, None) if key == 0 else (True, key)
                proto, _ = self._to_onnx(self.spec, unroll=unroll, time_steps=steps, dropout=True)
                graph = self._dropout_graphs[key] = _Graph(proto.SerializeToString(), self.options, self.providers)
        return graph

    def dropout_mask_shapes(self, time_steps: int, rows: int) -> dict[str, tuple[int, ...]]:
        """The shape of each dropout mask the dropout graph for `time_steps` takes, for `rows` rows."""
        graph = self._dropout_graph(time_steps)
        known = {i.name for i in graph.session.get_inputs()} - set(self._general.input_names)
        sizes = {"batch": rows, "time": time_steps}
        shapes = {}
        for info in graph.session.get_inputs():
            if info.name in known:
                shapes[info.name] = tuple(sizes[d] if isinstance(d, str) else int(d) for d in info.shape)
        return shapes

    def run_with_masks(
        self,
        inputs: Feeds,
        states: Sequence[np.ndarray] | None,
        mask: np.ndarray | None,
        masks: Mapping[str, np.ndarray],
    ) -> RunResult:
        """`run` on the dropout graph, with `masks` (`rnnserve.mc_dropout.Masks`, by input name) fed as they are."""
        sig = self._signature
        feeds, time_steps = self._feeds(inputs, states, mask)
        graph = self._dropout_graph(time_steps)
        for name, value in masks.items():
            if name not in graph.input_names:
                raise InvalidInput(f"the model's dropout graph takes no mask {name!r}")
            feeds[name] = np.ascontiguousarray(value, dtype=np.float32)
        result = graph.run(feeds)
        return RunResult(
            outputs={o.name: result[o.name] for o in sig.outputs},
            states=[result[s.name + STATE_OUT_SUFFIX] for s in sig.states],
        )

    def _batch_and_time(self, inputs: Feeds) -> tuple[int, int]:
        sig = self._signature
        if not sig.inputs:
            raise InvalidInput("the model has no inputs")
        first = sig.inputs[0]
        if first.name not in inputs:
            raise InvalidInput(f"missing input {first.name!r}")
        shape = np.shape(inputs[first.name])
        if len(shape) < 2:
            raise InvalidInput(f"input {first.name!r} needs (batch, time, ...) dimensions, got shape {shape}")
        return (shape[1], shape[0]) if sig.time_major else (shape[0], shape[1])
