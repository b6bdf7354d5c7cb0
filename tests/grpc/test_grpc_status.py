"""Every domain error maps to a gRPC status of its own kind; an unexpected one is INTERNAL without its message."""

from __future__ import annotations

import logging

import grpc
import pytest

from rnnserve import errors
from rnnserve.grpc.status import status_of
from rnnserve.sequences import SequenceNotStarted


def every_error() -> list[type[errors.RnnServeError]]:
    found: list[type[errors.RnnServeError]] = []
    pending = [errors.RnnServeError]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return found


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
        (SequenceNotStarted, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.Unauthorized, grpc.StatusCode.UNAUTHENTICATED),
        (errors.ModelNotFound, grpc.StatusCode.NOT_FOUND),
        (errors.SessionNotFound, grpc.StatusCode.NOT_FOUND),
        (errors.SeqConflict, grpc.StatusCode.ABORTED),
        (errors.SessionsNotSupported, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.TooManySessions, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.ModelNotReady, grpc.StatusCode.UNAVAILABLE),
        (errors.StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_problem_types_map_to_status_codes(error: type[errors.RnnServeError], code: grpc.StatusCode) -> None:
    assert status_of(error("what went wrong"), "test") == (code, "what went wrong")


def test_every_domain_error_has_a_status_of_its_kind() -> None:
    """Every error a client can get (any status but 500) maps to a code other than INTERNAL."""
    for kind in every_error():
        if kind.status >= 500 and kind.status != 503:
            continue
        code, _ = status_of(kind("x"), "test")
        assert code is not grpc.StatusCode.INTERNAL, kind


def test_an_unexpected_error_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        code, details = status_of(KeyError("secret detail"), "ModelInfer 'gru'")
    assert code is grpc.StatusCode.INTERNAL
    assert details == "internal error (KeyError); see the server log" and "secret" not in details
    assert "ModelInfer 'gru' failed" in caplog.text
