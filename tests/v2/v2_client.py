"""tritonclient helpers and assertions shared by the /v2 tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype


def inputs_of(arrays: Mapping[str, np.ndarray], *, binary: bool) -> list[triton.InferInput]:
    tensors = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return tensors


def infer(
    client: triton.InferenceServerClient,
    model: str,
    arrays: Mapping[str, np.ndarray],
    *,
    binary: bool = False,
    outputs: Sequence[str] | None = None,
    binary_outputs: bool = False,
    **kwargs: Any,
) -> triton.InferResult:
    """One infer call; `outputs` None asks for every model output (tritonclient then asks for binary)."""
    requested = None
    if outputs is not None:
        requested = [triton.InferRequestedOutput(name, binary_data=binary_outputs) for name in outputs]
    return client.infer(model, inputs_of(arrays, binary=binary), outputs=requested, **kwargs)


def run_sequence(
    client: triton.InferenceServerClient,
    model: str,
    chunks: Sequence[np.ndarray],
    sequence_id: int | str,
    *,
    output: str,
    binary: bool = False,
) -> list[np.ndarray]:
    """Send the chunks as one sequence (start on the first, end on the last); returns the outputs."""
    results = []
    for i, chunk in enumerate(chunks):
        result = infer(
            client,
            model,
            {"x": chunk},
            binary=binary,
            outputs=[output],
            binary_outputs=binary,
            sequence_id=sequence_id,
            sequence_start=i == 0,
            sequence_end=i == len(chunks) - 1,
        )
        results.append(result.as_numpy(output))
    return results


def raises_error(call: Callable[[], Any], status: int, *, contains: str = "") -> InferenceServerException:
    """The call fails with a protocol error (`{"error": ...}`) of that status whose message mentions `contains`."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    error = caught.value
    assert error.status() == str(status), f"{error.status()}: {error.message()}"
    assert contains.lower() in (error.message() or "").lower(), error.message()
    return error


def close(actual: Any, expected: Any) -> bool:
    """The project tolerance for float32 results: |d| <= 1e-5 + 1e-5*|y|, shapes equal."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return a.shape == e.shape and bool(np.all(np.abs(a - e) <= 1e-5 + 1e-5 * np.abs(e)))
