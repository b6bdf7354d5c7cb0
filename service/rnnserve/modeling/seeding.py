"""Process-wide seeding for freshly initialised weights (R keras `set_random_seed`).

As in Keras, an initializer created without a seed draws one from this stream when it is created, so that
`set_random_seed(n)` followed by the same model-building code gives the same weights. Bit-compatibility with
Keras' own random streams is not a goal (SEMANTICS §8).
"""

from __future__ import annotations

import numpy as np

from rnnserve.errors import InvalidArgument

_MAX_SEED = 2**31 - 1
_stream = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Make every later unseeded initializer (and so every fresh weight) reproducible."""
    global _stream
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgument(f"seed must be a non-negative integer. Received: seed={seed!r}", argument="seed")
    _stream = np.random.default_rng(int(seed))


def draw_seed() -> int:
    """A fresh seed from the process-wide stream."""
    return int(_stream.integers(1, _MAX_SEED))
