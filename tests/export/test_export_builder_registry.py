"""GraphBuilder naming/initializers and the converter registry."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import rnnserve.export.converters  # noqa: F401  (fills the registry)
from rnnserve.errors import UnsupportedLayer
from rnnserve.export.builder import IR_VERSION, OPSET, GraphBuilder
from rnnserve.export.registry import get_converter, register_converter, registered_classes
from rnnserve.spec import SUPPORTED_LAYERS


def test_names_are_unique_across_subgraphs_and_reserved_names_are_kept():
    g = GraphBuilder("g")
    g.reserve("out")
    assert g.fresh("out") == "out_1"
    body = g.subgraph("body")
    assert body.fresh("v") == "v" and g.fresh("v") == "v_1" and body.fresh("v") == "v_2"
    assert g.identity("v", "out") == "out"
    with pytest.raises(ValueError, match="already used"):
        g.add_input("v", TensorProto.FLOAT, [1])


def test_initializers_live_in_the_root_as_float32_and_constants_are_shared():
    g = GraphBuilder("g")
    body = g.subgraph("body")
    kernel = body.initializer(np.ones((2, 3), np.float64), "k")
    assert g.scalar(0.5) == body.scalar(0.5)
    assert g.constant(3, "int64") != g.ints([3])  # a scalar and a 1-D constant differ
    x = g.add_input("x", TensorProto.FLOAT, ["batch", 2])
    g.add_output(g.identity(g.op("MatMul", x, kernel), "y"), TensorProto.FLOAT, [None, 3])
    model = g.model()
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET and model.ir_version == IR_VERSION
    stored = {t.name: t for t in model.graph.initializer}
    assert stored[kernel].data_type == TensorProto.FLOAT
    assert not body.graph().initializer


def test_every_supported_layer_has_a_converter():
    assert registered_classes() >= SUPPORTED_LAYERS


def test_registering_twice_is_refused_unless_overwrite():
    def first(g, call):  # pragma: no cover - never called
        raise AssertionError

    def second(g, call):  # pragma: no cover - never called
        raise AssertionError

    register_converter("TestOnlyLayer")(first)
    try:
        with pytest.raises(ValueError, match="TestOnlyLayer"):
            register_converter("TestOnlyLayer")(second)
        assert get_converter("TestOnlyLayer") is first
        register_converter("TestOnlyLayer", overwrite=True)(second)
        assert get_converter("TestOnlyLayer") is second
    finally:
        from rnnserve.export import registry

        registry._CONVERTERS.pop("TestOnlyLayer")


def test_missing_converter_names_the_class():
    with pytest.raises(UnsupportedLayer, match="'Conv1D'") as info:
        get_converter("Conv1D")
    assert info.value.extra["layer_class"] == "Conv1D"
