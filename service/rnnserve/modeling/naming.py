"""Keras-style automatic names: `simple_rnn`, `simple_rnn_1`, ... unique per process until `clear_session()`."""

from __future__ import annotations

from collections import Counter

_uids: Counter[str] = Counter()


def unique_name(prefix: str) -> str:
    """`prefix` the first time, then `prefix_1`, `prefix_2`, ... (Keras' `uniquify`)."""
    _uids[prefix] += 1
    count = _uids[prefix]
    return prefix if count == 1 else f"{prefix}_{count - 1}"


def clear_session() -> None:
    """Reset the automatic layer and model names (R keras `clear_session()`)."""
    _uids.clear()
