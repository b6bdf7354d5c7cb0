"""TimeDistributed(layer): a per-timestep layer (`LayerKind.per_step`: Dense, Dropout) applied to every step.

Config: `name` and `layer = {"class_name", "config": <normalised inner config>}`; weights are the inner layer's,
under its names. The inner layer acts on the last axis, so the ONNX graph applies it to `(batch, time, ...)` as
it is; the mask passes through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rnnserve.errors import UnsupportedLayer
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult
from rnnserve.importers.keras_layers import describe
from rnnserve.kinds.base import LayerKind, Shape, find_kind, get_kind, register_kind
from rnnserve.kinds.config import inner_layer, plain, wrapper_keys
from rnnserve.spec import LayerSpec

if TYPE_CHECKING:
    from rnnserve.layers.model import Node


def _per_step_kind(class_name: str, where: str) -> LayerKind:
    kind = find_kind(class_name)
    if kind is None or not kind.per_step:
        raise UnsupportedLayer(f"{where}: wraps a {class_name!r}; rnnserve supports TimeDistributed(Dense) only")
    return kind


class TimeDistributed(LayerKind):
    class_name = "TimeDistributed"
    call_params = ("inputs", "training", "mask")

    def normalise(self, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
        where = describe(name, self.class_name)
        wrapper_keys(config, frozenset({"layer"}), where)
        class_name, raw, inner_name = inner_layer(config, "layer", where)
        kind = _per_step_kind(class_name, where)
        return {
            "name": name,
            "layer": {"class_name": class_name, "config": plain(kind, raw, inner_name, keras_version)},
        }

    def inner(self, config: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
        return config["layer"]["class_name"], config["layer"]["config"]

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        inner = config["layer"]
        return get_kind(inner["class_name"]).weight_shapes(inner["config"], in_features)

    def output_features(self, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
        inner = config["layer"]
        return get_kind(inner["class_name"]).output_features(inner["config"], in_features)[:1]

    def vars_path(self, prefix: str) -> str:
        return "layer/vars"

    def reference(self, layer: LayerSpec) -> Node:
        from rnnserve.layers.model import MaskPreserving
        from rnnserve.layers.wrappers import TimeDistributed as TimeDistributedReference

        return MaskPreserving(TimeDistributedReference.from_config(layer.config, layer.weights, layer.name))

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        layer = call.layer
        inner = layer.config["layer"]
        kind = find_kind(inner["class_name"])
        if kind is None or not kind.per_step:
            raise UnsupportedLayer(
                f"layer {layer.name!r}: TimeDistributed({inner['class_name']}) is not supported (Dense, Dropout)",
                layer=layer.name,
            )
        inner_layer = LayerSpec(inner["class_name"], layer.name, inner["config"], layer.weights, layer.inputs)
        return kind.convert(g, LayerCall(inner_layer, call.inputs, unroll=call.unroll))


register_kind(TimeDistributed())
