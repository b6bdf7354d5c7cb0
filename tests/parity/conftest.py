"""Parametrisation of the parity tests over the Keras fixture cases (see `parity_harness.py`).

Tests ask for these parameters, each test id being the case id (the model file name):

* `case`: every single-run case; `stateful_case`: the stateful batch-after-batch cases;
* `stream_case`: the cases whose sequence can be fed in chunks through the state inputs/outputs;
* `loop_case`: the cases whose graph is built both unrolled and with a loop;
* `engine`: "reference" (`ReferenceModel`) or "onnx" (`OrtModel` on onnxruntime).

The session fixture `parity` (a `Parity`) loads each spec and builds each runner once.
"""

from __future__ import annotations

import pytest
from parity_harness import Parity, ParityCase, load_cases

# The activation sweep only changes one elementwise function; the loop structure is checked on its tanh member.
LOOP_CHECK_SKIP_PREFIX = "k3_srnn_act_"
LOOP_CHECK_KEEP = "k3_srnn_act_tanh.keras"
CASES = load_cases()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    single = [c for c in CASES if c.stateful is None]
    choices: dict[str, list[ParityCase]] = {
        "case": single,
        "stateful_case": [c for c in CASES if c.stateful is not None],
        "stream_case": [c for c in single if c.stream],
        "loop_case": [c for c in single if not c.id.startswith(LOOP_CHECK_SKIP_PREFIX) or c.id == LOOP_CHECK_KEEP],
    }
    for name, cases in choices.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, cases, ids=[c.id for c in cases])


@pytest.fixture(params=["reference", "onnx"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def parity() -> Parity:
    return Parity()
