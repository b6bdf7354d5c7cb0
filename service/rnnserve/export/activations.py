"""Canonical Keras activation names (`rnnserve.layers.activations`) as ONNX nodes, with Keras's own constants.

Each emitter takes a builder and a value name and returns the activated value name. Row-wise activations
(softmax, log_softmax, sparsemax, glu) act on the last axis, as Keras's defaults do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from onnx import TensorProto

from rnnserve.errors import InvalidArgument
from rnnserve.export.builder import GraphBuilder

Emitter = Callable[[GraphBuilder, str], str]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _unary(op_type: str, **attrs: Any) -> Emitter:
    return lambda g, x: g.op(op_type, x, **attrs)


def _clip(low: float, high: float) -> Emitter:
    return lambda g, x: g.op("Clip", x, g.scalar(low), g.scalar(high))


def _linear(g: GraphBuilder, x: str) -> str:
    return x


def _silu(g: GraphBuilder, x: str) -> str:
    return g.op("Mul", x, g.op("Sigmoid", x))


def _gelu(g: GraphBuilder, x: str) -> str:
    """Exact form 0.5 x (1 + erf(x / sqrt 2)) (keras.activations.gelu, approximate=False)."""
    erf = g.op("Erf", g.op("Div", x, g.scalar(math.sqrt(2.0))))
    return g.op("Mul", g.op("Mul", x, g.scalar(0.5)), g.op("Add", erf, g.scalar(1.0)))


def _log_sigmoid(g: GraphBuilder, x: str) -> str:
    return g.op("Neg", g.op("Softplus", g.op("Neg", x)))


def _sparse_sigmoid(g: GraphBuilder, x: str) -> str:
    half = g.op("Mul", g.op("Add", x, g.scalar(1.0)), g.scalar(0.5))
    return g.op("Clip", half, g.scalar(0.0), g.scalar(1.0))


def _tanh_shrink(g: GraphBuilder, x: str) -> str:
    return g.op("Sub", x, g.op("Tanh", x))


def _sparse_plus(g: GraphBuilder, x: str) -> str:
    """0 for x <= -1, (x+1)^2 / 4 for -1 < x < 1, x for x >= 1."""
    shifted = g.op("Add", x, g.scalar(1.0))
    quadratic = g.op("Mul", g.op("Mul", shifted, shifted), g.scalar(0.25))
    upper = g.op("Where", g.op("Less", x, g.scalar(1.0)), quadratic, x)
    return g.op("Where", g.op("LessOrEqual", x, g.scalar(-1.0)), g.scalar(0.0), upper)


def _squareplus(g: GraphBuilder, x: str) -> str:
    """(x + sqrt(x^2 + b)) / 2 with Keras's default b = 4."""
    root = g.op("Sqrt", g.op("Add", g.op("Mul", x, x), g.scalar(4.0)))
    return g.op("Div", g.op("Add", x, root), g.scalar(2.0))


def _glu(g: GraphBuilder, x: str) -> str:
    a, b = g.node("Split", [x], 2, axis=-1, num_outputs=2)
    return g.op("Mul", a, g.op("Sigmoid", b))


def _sparsemax(g: GraphBuilder, x: str) -> str:
    """Sparsemax on the last axis, step for step as Keras computes it (sort, cumsum, support, threshold)."""
    depth = g.op("Slice", g.op("Shape", x), g.ints([-1]), g.ints([np.iinfo(np.int64).max]))
    sorted_x, _ = g.node("TopK", [x, depth], 2, axis=-1, largest=1, sorted=1)
    cumsum = g.op("CumSum", sorted_x, g.constant(-1, np.int64))
    count = g.op("Cast", g.op("Squeeze", depth), to=TensorProto.FLOAT)
    ranks = g.op("Range", g.scalar(1.0), g.op("Add", count, g.scalar(1.0)), g.scalar(1.0))
    bound = g.op("Div", g.op("Sub", cumsum, g.scalar(1.0)), ranks)
    support = g.op("Greater", g.op("Sub", sorted_x, bound), g.scalar(0.0))
    size = g.op("ReduceSum", g.op("Cast", support, to=TensorProto.FLOAT), g.ints([-1]), keepdims=1)
    supported_sum = g.op("ReduceSum", g.op("Where", support, cumsum, g.scalar(0.0)), g.ints([-1]), keepdims=1)
    tau = g.op("Div", g.op("Sub", supported_sum, g.scalar(1.0)), size)
    return g.op("Relu", g.op("Sub", x, tau))


EMITTERS: Mapping[str, Emitter] = {
    "linear": _linear,
    "relu": _unary("Relu"),
    "relu6": _clip(0.0, 6.0),
    "leaky_relu": _unary("LeakyRelu", alpha=0.2),
    "elu": _unary("Elu", alpha=1.0),
    "celu": _unary("Celu", alpha=1.0),
    "selu": _unary("Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE),
    "exponential": _unary("Exp"),
    "sigmoid": _unary("Sigmoid"),
    "hard_sigmoid": _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),  # Keras 3: relu6(x + 3) / 6
    "hard_sigmoid_keras2": _unary("HardSigmoid", alpha=0.2, beta=0.5),  # Keras 2: clip(0.2x + 0.5, 0, 1)
    "log_sigmoid": _log_sigmoid,
    "sparse_sigmoid": _sparse_sigmoid,
    "tanh": _unary("Tanh"),
    "hard_tanh": _clip(-1.0, 1.0),
    "tanh_shrink": _tanh_shrink,
    "softplus": _unary("Softplus"),
    "sparse_plus": _sparse_plus,
    "squareplus": _squareplus,
    "softsign": _unary("Softsign"),
    "soft_shrink": _unary("Shrink", bias=0.5, lambd=0.5),
    "hard_shrink": _unary("Shrink", bias=0.0, lambd=0.5),
    "silu": _silu,
    "hard_silu": _unary("HardSwish"),  # x * relu6(x + 3) / 6
    "mish": _unary("Mish"),
    "gelu": _gelu,
    "softmax": _unary("Softmax", axis=-1),
    "log_softmax": _unary("LogSoftmax", axis=-1),
    "sparsemax": _sparsemax,
    "glu": _glu,
}


def emit_activation(g: GraphBuilder, name: str, x: str) -> str:
    """Apply canonical activation `name` to value `x`; InvalidArgument for a name that is not canonical."""
    try:
        emitter = EMITTERS[name]
    except KeyError:
        raise InvalidArgument(f"activation={name!r} is not a canonical activation name") from None
    return emitter(g, x)
