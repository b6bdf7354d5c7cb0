"""Sequence ids and parameters: validation, and session ids that never collide."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from rnnserve.api.v2.infer import sequence_control
from rnnserve.errors import InvalidInput
from rnnserve.sequences import MAX_STRING_ID_CHARS, SequenceControl, session_id_for


def test_session_ids_of_integers_strings_and_models_never_collide() -> None:
    models = ["m", "m:s:x", "m:u:1", "a b", "v2"]
    ids: list[int | str] = [1, 7, 2**63, 2**64 - 1, "7", "1", "x:u:1", "x", "s:7", "ünï/code ", "%3A"]
    made = {(model, sid): session_id_for(model, sid) for model, sid in itertools.product(models, ids)}
    assert len(set(made.values())) == len(made)
    for (_, sid), session_id in made.items():
        prefix, _, kind, text = session_id.split(":")  # exactly four fields: no ':' inside one
        assert prefix == "v2" and kind == ("u" if isinstance(sid, int) else "s")
        assert ":" not in text


def test_session_ids_are_unlike_v1_session_ids() -> None:
    v1_alphabet = re.compile(r"[A-Za-z0-9_-]+")  # secrets.token_urlsafe
    assert not v1_alphabet.fullmatch(session_id_for("m", 1))
    assert session_id_for("gru", 5) == "v2:gru:u:5" and session_id_for("gru", "a/b") == "v2:gru:s:a%2Fb"


@pytest.mark.parametrize(
    ("sequence_id", "message"),
    [
        (0, r"\[1, 2\*\*64 - 1\]"),
        (-1, r"\[1, 2\*\*64 - 1\]"),
        (2**64, r"\[1, 2\*\*64 - 1\]"),
        ("", "1 to 256 characters"),
        ("x" * (MAX_STRING_ID_CHARS + 1), "1 to 256 characters"),
        (True, "unsigned 64-bit integer or a string"),
        (1.5, "unsigned 64-bit integer or a string"),
    ],
)
def test_bad_sequence_ids_are_invalid_input(sequence_id: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        SequenceControl(sequence_id)


def test_good_sequence_ids_describe_themselves() -> None:
    assert SequenceControl(2**64 - 1).describe() == f"sequence {2**64 - 1}"
    assert SequenceControl("x" * MAX_STRING_ID_CHARS, start=True).describe().startswith("sequence 'xxx")


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, None),
        ({"sequence_id": 0, "sequence_start": False, "sequence_end": False}, None),  # tritonclient's "no sequence"
        ({"sequence_id": ""}, None),
        ({"sequence_id": 5, "sequence_start": True}, SequenceControl(5, start=True)),
        ({"sequence_id": 2**64 - 1, "sequence_end": True}, SequenceControl(2**64 - 1, end=True)),
        ({"sequence_id": "abc", "sequence_start": True, "sequence_end": True}, SequenceControl("abc", True, True)),
    ],
)
def test_sequence_parameters_parse(parameters: dict[str, Any], expected: SequenceControl | None) -> None:
    assert sequence_control(parameters) == expected


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"sequence_start": True}, "need a sequence_id"),
        ({"sequence_id": 0, "sequence_end": True}, "need a sequence_id"),
        ({"sequence_id": 1, "sequence_start": 1}, "sequence_start must be true or false"),
        ({"sequence_id": 1, "sequence_end": "yes"}, "sequence_end must be true or false"),
        ({"sequence_id": 1.0}, "unsigned 64-bit integer or a string"),
        ({"sequence_id": False}, "unsigned 64-bit integer or a string"),
        ({"sequence_id": -3}, "must be in"),
        ({"sequence_id": [1]}, "unsigned 64-bit integer or a string"),
    ],
)
def test_bad_sequence_parameters_are_invalid_input(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sequence_control(parameters)
