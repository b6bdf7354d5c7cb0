"""The onnxruntime execution provider the suite runs exported graphs on.

`RNNSERVE_TEST_PROVIDER=cuda` runs the parity, export and runtime tests on the GPU (onnxruntime-gpu needed);
the default is the CPU. The service and /v2 tests follow the server's own `RNNSERVE_PROVIDER` instead. See
bench/cuda_check.sh for the whole GPU check.
"""

from __future__ import annotations

import os

from rnnserve.runtime.ort_model import RuntimeOptions, resolve_providers, with_options

PROVIDER = os.environ.get("RNNSERVE_TEST_PROVIDER", "cpu")


def session_providers() -> list[str | tuple[str, dict[str, str]]]:
    """`providers=` for an `InferenceSession` made by a test (CUDA with the server's options, then the CPU)."""
    return with_options(resolve_providers(PROVIDER))


def runtime_options() -> RuntimeOptions:
    """`OrtModel` options for the chosen provider (the server's defaults otherwise)."""
    return RuntimeOptions(provider=PROVIDER)  # type: ignore[arg-type]
