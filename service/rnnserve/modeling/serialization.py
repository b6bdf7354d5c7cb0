"""Keras' serialized-object form and the lookup of objects given by name, dict or instance.

Keras writes initializers, regularizers, constraints and layers as
`{"module": ..., "class_name": ..., "config": {...}, "registered_name": null}` (SEMANTICS §6, §9).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from rnnserve.errors import InvalidArgument

DTYPE = "float32"


def keras_object(module: str, class_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    return {"module": module, "class_name": class_name, "config": dict(config), "registered_name": None}


def dtype_policy(name: str = DTYPE) -> dict[str, Any]:
    """The DTypePolicy dict a Keras 3 layer config stores under `dtype`."""
    return keras_object("keras", "DTypePolicy", {"name": name})


def float32_rounded(value: float) -> float:
    """A float as Keras stores values it kept in a float32 tensor (0.02 -> 0.019999999552965164)."""
    return float(np.float32(value))


class KerasObject:
    """Base of initializers, regularizers and constraints: a Keras class name, a module and a config."""

    module: ClassVar[str]
    class_name: ClassVar[str]

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> KerasObject:
        return cls(**config)

    def serialize(self) -> dict[str, Any]:
        return keras_object(self.module, self.class_name, self.get_config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.class_name}({args})"


Factory = Callable[..., KerasObject]


def resolve(
    identifier: Any,
    *,
    argument: str,
    kind: str,
    base: type[KerasObject],
    registry: Mapping[str, Factory],
) -> KerasObject | None:
    """Turn a layer argument into an object: None, an instance, a registered name, or a serialized dict.

    Raises InvalidArgument naming `argument` and the value for anything else.
    """
    if identifier is None or isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        factory = registry.get(identifier)
        if factory is None:
            known = ", ".join(sorted(registry))
            raise InvalidArgument(
                f"{argument}={identifier!r} is not a known {kind} (known: {known})", argument=argument
            )
        return factory()
    if isinstance(identifier, Mapping) and "class_name" in identifier:
        factory = registry.get(str(identifier["class_name"]))
        if factory is None:
            raise InvalidArgument(
                f"{argument}={dict(identifier)!r}: unknown {kind} class {identifier['class_name']!r}",
                argument=argument,
            )
        config = identifier.get("config") or {}
        try:
            obj: KerasObject = getattr(factory, "from_config", factory)(config)
            return obj
        except TypeError as exc:
            raise InvalidArgument(f"{argument}={dict(identifier)!r}: bad config ({exc})", argument=argument) from None
    raise InvalidArgument(
        f"{argument}={identifier!r}: expected None, a {kind} object, a {kind} name or a serialized {kind} dict",
        argument=argument,
    )


def serialize_or_none(obj: KerasObject | None) -> dict[str, Any] | None:
    return None if obj is None else obj.serialize()
