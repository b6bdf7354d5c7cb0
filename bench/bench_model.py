"""The benchmark model: SimpleRNN(128) over 32 features (input "x"), last output only, seeded, exported as a package.

python -m bench.bench_model DIR     # writes DIR/bench_rnn/
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnserve.export.package import write_package
from rnnserve.modeling import clear_session, keras_model_sequential, layer_input, layer_simple_rnn, set_random_seed
from rnnserve.spec import ModelSpec

MODEL_NAME = "bench_rnn"
FEATURES = 32
UNITS = 128
SEED = 2024


def bench_spec() -> ModelSpec:
    """SimpleRNN(128, return_sequences=False) on (batch, time, 32) float32 input "x"."""
    clear_session()
    set_random_seed(SEED)
    model = keras_model_sequential(name=MODEL_NAME)
    model.add(layer_input(shape=(None, FEATURES), name="x"))
    model.add(layer_simple_rnn(units=UNITS, return_sequences=False))
    return model.to_spec()


def write_bench_model(models_dir: Path) -> Path:
    """Export the bench model as `models_dir/bench_rnn/`; returns the package folder."""
    return write_package(bench_spec(), Path(models_dir) / MODEL_NAME)


if __name__ == "__main__":
    print(write_bench_model(Path(sys.argv[1] if len(sys.argv) > 1 else "bench_models")))
