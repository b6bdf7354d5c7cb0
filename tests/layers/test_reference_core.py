"""Dense, Embedding, Masking, Dropout, TimeDistributed."""

from __future__ import annotations

import numpy as np
import pytest
from layer_specs import dense_config

from rnnserve.errors import InvalidInput, ModelFileError, UnsupportedLayer
from rnnserve.layers.core import Dense, Dropout, Embedding, Masking
from rnnserve.layers.wrappers import TimeDistributed


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(21)


def test_dense_on_last_axis_with_row_wise_activation(rng: np.random.Generator) -> None:
    kernel, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
    dense = Dense.from_config(dense_config(4, "softmax"), {"kernel": kernel, "bias": bias})
    x = rng.normal(size=(2, 5, 3))
    y = dense(x)
    logits = np.einsum("btf,fu->btu", x, kernel) + bias
    np.testing.assert_allclose(y, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), rtol=1e-12)


def test_dense_without_bias_and_alias_activation(rng: np.random.Generator) -> None:
    kernel = rng.normal(size=(3, 2))
    dense = Dense.from_config(dense_config(2, "swish", use_bias=False), {"kernel": kernel})
    x = rng.normal(size=(4, 3))
    z = x @ kernel
    np.testing.assert_allclose(dense(x), z / (1 + np.exp(-z)), rtol=1e-12)


def test_dense_glu_halves_units(rng: np.random.Generator) -> None:
    dense = Dense.from_config(dense_config(4, "glu"), {"kernel": rng.normal(size=(3, 4)), "bias": np.zeros(4)})
    assert dense(rng.normal(size=(2, 3))).shape == (2, 2)
    with pytest.raises(ModelFileError, match="even"):
        Dense.from_config(dense_config(3, "glu"), {"kernel": np.zeros((3, 3)), "bias": np.zeros(3)}, "out")


def test_dense_shape_errors(rng: np.random.Generator) -> None:
    with pytest.raises(ModelFileError, match="'out'.*bias"):
        Dense.from_config(dense_config(4), {"kernel": np.zeros((3, 4)), "bias": np.zeros(3)}, "out")
    dense = Dense.from_config(dense_config(4), {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)})
    with pytest.raises(InvalidInput, match="3 features"):
        dense(np.zeros((2, 5)))


def test_embedding_lookup_and_mask(rng: np.random.Generator) -> None:
    table = rng.normal(size=(6, 2))
    emb = Embedding.from_config({"input_dim": 6, "output_dim": 2, "mask_zero": True}, {"embeddings": table})
    ids = np.array([[0, 5, 2], [1, 0, 0]], dtype=np.int64)
    np.testing.assert_array_equal(emb(ids, "tok"), table[ids])
    np.testing.assert_array_equal(emb.compute_mask(ids), ids != 0)
    plain = Embedding.from_config({"input_dim": 6, "output_dim": 2, "mask_zero": False}, {"embeddings": table})
    assert plain.compute_mask(ids) is None


@pytest.mark.parametrize("bad", [np.array([[1, 6]]), np.array([[-1, 2]]), np.array([[1.5, 2.0]])])
def test_embedding_rejects_bad_ids_naming_the_input(bad: np.ndarray) -> None:
    emb = Embedding.from_config({"input_dim": 6, "output_dim": 2}, {"embeddings": np.zeros((6, 2))})
    with pytest.raises(InvalidInput, match="'tokens'"):
        emb(bad, "tokens")


def test_embedding_accepts_integral_floats() -> None:
    table = np.arange(12.0).reshape(6, 2)
    emb = Embedding.from_config({"input_dim": 6, "output_dim": 2}, {"embeddings": table})
    np.testing.assert_array_equal(emb(np.array([[1.0, 5.0]]), "tok"), table[[[1, 5]]])


def test_masking_needs_every_feature_equal() -> None:
    layer = Masking.from_config({"mask_value": -1.0}, {})
    x = np.array([[[-1.0, -1.0], [-1.0, 2.0], [3.0, 4.0], [-1.0, -1.0]]])
    np.testing.assert_array_equal(layer.compute_mask(x), [[False, True, True, False]])
    expected = x.copy()
    expected[0, [0, 3]] = 0.0
    np.testing.assert_array_equal(layer(x), expected)


def test_dropout_is_identity(rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 3, 4))
    assert Dropout.from_config({"rate": 0.5}, {})(x) is x


def test_time_distributed_dense_equals_dense_on_last_axis(rng: np.random.Generator) -> None:
    weights = {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=4)}
    inner = {"class_name": "Dense", "config": dense_config(4, "relu")}
    td = TimeDistributed.from_config({"layer": inner}, weights)
    x = rng.normal(size=(2, 5, 3))
    np.testing.assert_allclose(td(x), Dense.from_config(dense_config(4, "relu"), weights)(x), rtol=1e-12)


def test_time_distributed_rejects_other_layers() -> None:
    with pytest.raises(UnsupportedLayer, match="'td'.*LSTM"):
        TimeDistributed.from_config({"layer": {"class_name": "LSTM", "config": {}}}, {}, "td")
