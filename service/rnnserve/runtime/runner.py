"""How a served model is run: the contract between the model layer and the service.

One call shape serves a whole sequence and one chunk of a stream:

    runner.run(inputs, states=None, mask=None) -> RunResult(outputs, states)

* `inputs`: `{input name: array}` in the model's own layout (batch-major unless `time_major`);
* `mask`: optional bool `(batch, time)`; False = timestep skipped (Keras masking); ANDed with the mask
  that Embedding(mask_zero)/Masking derive from the inputs;
* `states`: optional list of float32 `(batch, units)` arrays in `signature.states` order (the `ModelSignature`
  of `rnnserve.signature`); zeros when omitted;
* `RunResult.outputs`: `{output name: array}` in `signature.outputs` order; `RunResult.states` the final
  states (after the last unmasked step of each row) in the same order as `states`.

Both `rnnserve.layers.model.ReferenceModel` (numpy) and `rnnserve.runtime.ort_model.OrtModel` (onnxruntime)
implement `Runner`.

The ONNX graph of a model uses these names: one graph input per signature input, `MASK_INPUT`, one input per
state named as the state; outputs are the signature outputs then one per state named `state + STATE_OUT_SUFFIX`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rnnserve.signature import ModelSignature

MASK_INPUT = "mask"
STATE_OUT_SUFFIX = ":out"

Feeds = Mapping[str, np.ndarray]
States = list[np.ndarray]


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    states: States


class Runner(Protocol):
    """Anything that runs a model with explicit state: the numpy reference and onnxruntime alike."""

    @property
    def signature(self) -> ModelSignature: ...

    def run(
        self, inputs: Feeds, states: Sequence[np.ndarray] | None = None, mask: np.ndarray | None = None
    ) -> RunResult: ...
