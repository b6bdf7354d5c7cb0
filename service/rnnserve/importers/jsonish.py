"""Typed access to decoded JSON from untrusted files: a wrong type is a `ModelFileError`, never a crash."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnserve.errors import ModelFileError


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ModelFileError(f"{what} is {type(value).__name__}, expected an object")
    return value


def array(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ModelFileError(f"{what} is {type(value).__name__}, expected a list")
    return value


def is_number(value: Any) -> bool:
    """An int or float, but not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_index(value: Any) -> bool:
    """A non-negative int, but not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def short(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, for quoting untrusted values in error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
