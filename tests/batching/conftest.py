"""Small seeded recurrent models for the batching tests, run by the numpy reference (exact and cheap)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest

from rnnserve.layers.model import ReferenceModel
from rnnserve.modeling import (
    clear_session,
    keras_model_sequential,
    layer_gru,
    layer_input,
    layer_lstm,
    layer_simple_rnn,
    set_random_seed,
)

FEATURES = 3


def build(kind: str, *, time_major: bool = False, **options: object) -> ReferenceModel:
    """A one-layer model returning sequences (or the last output), with seeded weights; `time_major` makes it a
    Keras 2 style time-major layer (which Keras 3's layer API no longer builds)."""
    clear_session()
    set_random_seed(7)
    layer = {"SimpleRNN": layer_simple_rnn, "GRU": layer_gru, "LSTM": layer_lstm}[kind]
    model = keras_model_sequential(name=f"{kind.lower()}_model")
    model.add(layer_input(shape=(None, FEATURES), name="x"))
    model.add(layer(units=4, **{"return_sequences": True, **options}))
    spec = model.to_spec()
    if time_major:
        (rnn,) = spec.layers
        spec = replace(spec, layers=(replace(rnn, config={**rnn.config, "time_major": True}),))
    return ReferenceModel(spec)


@pytest.fixture
def make_model() -> Iterator[Callable[..., ReferenceModel]]:
    yield build
    clear_session()  # leave automatic layer names as other test folders expect them


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)
