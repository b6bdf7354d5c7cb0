"""A Keras-like `summary()` table."""

from __future__ import annotations

from collections.abc import Sequence

from rnnserve.modeling.base import Layer
from rnnserve.modeling.tensors import Node, Shape


def _shape(shapes: Sequence[Shape]) -> str:
    text = [("(" + ", ".join("None" if d is None else str(d) for d in s) + ("," if len(s) == 1 else "") + ")")
            for s in shapes]  # fmt: skip
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def summary_text(name: str, inputs: Sequence[Layer], nodes: Sequence[Node], *, connected: bool) -> str:
    """Rows `Layer (type) | Output Shape | Param # [| Connected to]`, then the parameter count."""
    rows = [("Layer (type)", "Output Shape", "Param #", "Connected to")]
    if connected:
        for layer in inputs:
            assert layer.node is not None
            rows.append((f"{layer.name} (InputLayer)", _shape([t.shape for t in layer.node.outputs]), "0", "-"))
    for node in nodes:
        parents = ", ".join(f"{t.layer.name}[0][{t.index}]" for t in node.parents)
        rows.append((
            f"{node.layer.name} ({node.layer.class_name})",
            _shape([t.shape for t in node.outputs]),
            f"{node.layer.count_params():,}",
            parents,
        ))  # fmt: skip
    columns = 4 if connected else 3
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    rule = "-" * (sum(widths) + 3 * (columns - 1))
    lines = [f'Model: "{name}"', rule]
    for i, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())
        if i == 0:
            lines.append(rule)
    total = sum(node.layer.count_params() for node in nodes)
    lines += [rule, f"Total params: {total:,}"]
    return "\n".join(lines)
