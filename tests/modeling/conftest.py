"""Each test starts with fresh automatic names and a fixed seed stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rnnserve.modeling import clear_session, set_random_seed


@pytest.fixture(autouse=True)
def fresh_session() -> Iterator[None]:
    clear_session()
    set_random_seed(1234)
    yield
    clear_session()
