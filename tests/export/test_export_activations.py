"""Every canonical activation as ONNX nodes against `rnnserve.layers.activations.apply`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from export_specs import assert_close, session
from onnx import TensorProto

from rnnserve.errors import InvalidArgument
from rnnserve.export.activations import EMITTERS, emit_activation
from rnnserve.export.builder import GraphBuilder
from rnnserve.layers.activations import ACTIVATION_NAMES, apply

# Values around every kink and threshold Keras uses, plus a spread; +-30 checks the overflow-safe forms.
SAMPLES = (
    np.concatenate(
        [
            np.linspace(-6.0, 6.0, 49),
            [-30.0, -20.5, -3.0, -1.0, -0.5, -1e-6, 0.0, 1e-6, 0.5, 1.0, 3.0, 20.5, 30.0, 88.0, -88.0],
        ]
    )
    .astype(np.float32)
    .reshape(4, 16)
)
EXP_SAFE = {"exponential"}  # exp(88) overflows float32 in any implementation


def _activation_model(name: str) -> onnx.ModelProto:
    g = GraphBuilder(f"act_{name}")
    x = g.add_input("x", TensorProto.FLOAT, ["batch", SAMPLES.shape[1]])
    g.add_output(g.identity(emit_activation(g, name, x), "y"), TensorProto.FLOAT, [None, None])
    return g.model()


def test_every_canonical_activation_has_an_emitter():
    assert set(EMITTERS) == set(ACTIVATION_NAMES)


@pytest.mark.parametrize("name", sorted(ACTIVATION_NAMES))
def test_activation_matches_numpy_reference(name):
    model = _activation_model(name)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    x = np.clip(SAMPLES, -20.0, 20.0) if name in EXP_SAFE else SAMPLES
    (y,) = session(model).run(None, {"x": x})
    assert_close(y, apply(name, x.astype(np.float64)), name)


def test_keras3_and_keras2_hard_sigmoid_differ():
    x = np.array([[-2.0, 1.0, 2.0, 2.6]], np.float32)
    pad = np.zeros((1, SAMPLES.shape[1] - x.shape[1]), np.float32)
    feeds = {"x": np.concatenate([x, pad], axis=1)}
    (k3,) = session(_activation_model("hard_sigmoid")).run(None, feeds)
    (k2,) = session(_activation_model("hard_sigmoid_keras2")).run(None, feeds)
    np.testing.assert_allclose(k3[0, :4], [1 / 6, 2 / 3, 5 / 6, 0.9333333], rtol=1e-6)
    np.testing.assert_allclose(k2[0, :4], [0.1, 0.7, 0.9, 1.0], rtol=1e-6)


def test_unknown_activation_is_refused():
    with pytest.raises(InvalidArgument, match="swish"):
        emit_activation(GraphBuilder("g"), "swish", "x")  # an alias: the spec holds canonical names only
