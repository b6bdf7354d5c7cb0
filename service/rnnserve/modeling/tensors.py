"""Symbolic tensors and call nodes: what `layer_input()` returns and what calling a layer on it records."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnnserve.modeling.base import Layer

Shape = tuple[int | None, ...]

_order = itertools.count()


@dataclass(eq=False)
class Node:
    """One application of a layer: its main input, its `initial_state` tensors and its outputs.

    `order` grows with every call in the process, so sorting nodes by it gives a topological order.
    """

    layer: Layer
    inputs: tuple[KerasTensor, ...]
    initial_state: tuple[KerasTensor, ...] = ()
    outputs: tuple[KerasTensor, ...] = ()
    order: int = field(default_factory=lambda: next(_order))

    @property
    def parents(self) -> tuple[KerasTensor, ...]:
        return self.inputs + self.initial_state


@dataclass(eq=False)
class KerasTensor:
    """Output `index` of `node`, with its shape (batch axis first; None = free), dtype and whether a Keras mask
    travels with it (from Embedding(mask_zero) or Masking)."""

    shape: Shape
    dtype: str
    node: Node
    index: int = 0
    has_mask: bool = False

    @property
    def layer(self) -> Layer:
        return self.node.layer

    def keras_history(self) -> list[Any]:
        return [self.layer.name, 0, self.index]

    def serialize(self) -> dict[str, Any]:
        """A tensor reference as Keras writes it in `inbound_nodes`."""
        return {
            "class_name": "__keras_tensor__",
            "config": {"shape": list(self.shape), "dtype": self.dtype, "keras_history": self.keras_history()},
        }

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape} dtype={self.dtype} from {self.layer.name}[{self.index}]>"
