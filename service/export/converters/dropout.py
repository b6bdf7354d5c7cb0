"""Dropout: the identity at inference (SEMANTICS §6); the mask passes through."""

from __future__ import annotations

from service.export.builder import GraphBuilder
from service.export.context import LayerCall, LayerResult
from service.export.converters.dense import single_input
from service.export.registry import register_converter


@register_converter("Dropout")
def convert_dropout(g: GraphBuilder, call: LayerCall) -> LayerResult:
    return LayerResult((single_input(call),))
