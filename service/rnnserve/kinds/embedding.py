"""Embedding: a row lookup; with `mask_zero` token id 0 is masked (and the caller's explicit mask applies)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from onnx import TensorProto

from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.export.weights import check_weights
from rnnserve.kinds.base import NO_MASK, REQUIRED, LayerKind, MaskRule, Shape, register_kind
from rnnserve.kinds.dense import single_input
from rnnserve.kinds.masking import combine_masks
from rnnserve.spec import LayerSpec

if TYPE_CHECKING:
    from rnnserve.layers.model import Node


def convert_embedding(g: GraphBuilder, call: LayerCall) -> LayerResult:
    layer = call.layer
    check_weights(layer)
    ids = single_input(call)
    index = ids.name if ids.elem_type == TensorProto.INT64 else g.op("Cast", ids.name, to=TensorProto.INT64)
    table = g.initializer(layer.weights["embeddings"], f"{layer.name}/embeddings")
    y = g.op("Gather", table, index, axis=0, hint=layer.name)
    mask = ids.mask
    if layer.config.get("mask_zero", False) and ids.is_sequence:
        keep = g.op("Not", g.op("Equal", index, g.constant(0, "int64")), hint=f"{layer.name}/mask")
        mask = combine_masks(g, ids, keep)
    output_dim = int(layer.config["output_dim"])
    return LayerResult((Value(y, (*ids.shape, output_dim), mask=mask, time_major=ids.time_major),))


class Embedding(LayerKind):
    """Config: `name, input_dim, output_dim, embeddings_initializer, embeddings_regularizer, activity_regularizer,
    embeddings_constraint, mask_zero`; weight `embeddings (input_dim, output_dim)`. Reads token ids."""

    class_name = "Embedding"
    defaults = {
        "input_dim": REQUIRED,
        "output_dim": REQUIRED,
        "embeddings_initializer": "uniform",
        "embeddings_regularizer": None,
        "activity_regularizer": None,
        "embeddings_constraint": None,
        "mask_zero": False,
    }
    dropped = frozenset({"input_length"})
    reads_token_ids = True

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        return {"embeddings": (int(config["input_dim"]), int(config["output_dim"]))}

    def output_features(self, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
        return [int(config["output_dim"])]

    def output_mask(self, config: Mapping[str, Any], index: int) -> MaskRule:
        return MaskRule("not_equal", 0.0) if index == 0 and config["mask_zero"] else NO_MASK

    def vocabulary(self, layer: LayerSpec) -> int | None:
        table = layer.weights.get("embeddings")
        size = layer.config.get("input_dim", None if table is None else table.shape[0])
        return None if size is None else int(size)

    def reference(self, layer: LayerSpec) -> Node:
        from rnnserve.layers.core import Embedding as EmbeddingReference
        from rnnserve.layers.model import EmbeddingNode

        reference = EmbeddingReference.from_config(layer.config, layer.weights, layer.name)
        return EmbeddingNode(reference, layer.inputs[0].layer)

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        return convert_embedding(g, call)


register_kind(Embedding())
