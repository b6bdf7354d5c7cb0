"""Validation of layer-API arguments. Every error names the argument and the value received."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from rnnserve.errors import InvalidArgument

Shape = tuple[int | None, ...]


def invalid(argument: str, value: Any, expected: str) -> InvalidArgument:
    return InvalidArgument(f"`{argument}` {expected}. Received: {argument}={value!r}", argument=argument)


def _is_integral(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    # R numbers are doubles: units = 32 arrives as 32.0.
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def positive_int(argument: str, value: Any) -> int:
    if not _is_integral(value) or int(value) <= 0:
        raise invalid(argument, value, "must be a positive integer")
    return int(value)


def non_negative_int(argument: str, value: Any) -> int:
    if not _is_integral(value) or int(value) < 0:
        raise invalid(argument, value, "must be a non-negative integer")
    return int(value)


def optional_int(argument: str, value: Any) -> int | None:
    return None if value is None else non_negative_int(argument, value)


def flag(argument: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise invalid(argument, value, "must be TRUE or FALSE (a bool)")
    return bool(value)


def finite_float(argument: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise invalid(argument, value, "must be a number")
    if not math.isfinite(value):
        raise invalid(argument, value, "must be finite")
    return float(value)


def fraction(argument: str, value: Any, *, allow_one: bool = False) -> float:
    """A rate in [0, 1) (dropout of a recurrent layer) or [0, 1] (`allow_one`, the Dropout layer)."""
    number = finite_float(argument, value)
    if number < 0 or number > 1 or (number == 1 and not allow_one):
        raise invalid(argument, value, "must be in [0, 1]" if allow_one else "must be in [0, 1)")
    return number


def choice(argument: str, value: Any, options: Collection[Any]) -> Any:
    if value not in options:
        raise invalid(argument, value, f"must be one of {sorted(options, key=repr)!r}")
    return value


def name(argument: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "/" in value:
        raise invalid(argument, value, "must be a non-empty string without '/'")
    return value


def shape(argument: str, value: Any) -> Shape:
    """A shape without the batch axis, R style: an int, or a sequence of ints and None (R's NA/NULL)."""
    if _is_integral(value):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise invalid(argument, value, "must be a sequence of positive integers or None")
    dims: list[int | None] = []
    for dim in value:
        if dim is None or (isinstance(dim, float) and math.isnan(dim)):
            dims.append(None)
        elif _is_integral(dim) and int(dim) > 0:
            dims.append(int(dim))
        else:
            raise invalid(argument, value, "must be a sequence of positive integers or None")
    return tuple(dims)
