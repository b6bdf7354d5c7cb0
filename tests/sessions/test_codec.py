"""States <-> bytes: exact round trips, a fixed little-endian layout, loud failures on anything else."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rnnserve.sessions.codec import StateCodecError, decode_states, encode_states


def test_round_trip_is_exact_for_every_shape() -> None:
    rng = np.random.default_rng(0)
    states = (
        rng.standard_normal((1, 128)).astype(np.float32),
        rng.standard_normal((3, 7)).astype(np.float32),
        np.array([np.inf, -0.0, np.float32(1e-45)], dtype=np.float32),
        np.zeros((0, 4), dtype=np.float32),
    )
    decoded = decode_states(encode_states(states))
    assert [d.shape for d in decoded] == [s.shape for s in states]
    assert all(d.dtype == np.float32 for d in decoded)
    assert all(np.array_equal(d, s) for d, s in zip(decoded, states, strict=True))
    assert np.signbit(decoded[2][1])


def test_layout_is_magic_count_shapes_and_little_endian_floats() -> None:
    data = encode_states((np.array([[1.0, -2.0]], dtype=np.float32),))
    assert data == b"RNS1" + struct.pack("<IB2I2f", 1, 2, 1, 2, 1.0, -2.0)


def test_big_endian_input_is_stored_little_endian() -> None:
    big = np.array([[1.5, 2.5]], dtype=">f4")
    assert encode_states((big,)) == encode_states((big.astype("<f4"),))


def test_no_states_is_a_valid_value() -> None:
    assert decode_states(encode_states(())) == ()


def test_decoded_arrays_are_read_only() -> None:
    (state,) = decode_states(encode_states((np.ones((1, 3), dtype=np.float32),)))
    with pytest.raises(ValueError):
        state[0, 0] = 2.0


def test_non_float32_states_are_refused() -> None:
    with pytest.raises(StateCodecError, match="state 0 has dtype float64"):
        encode_states((np.ones((1, 2)),))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PKL\x00" + bytes(8), "does not start with"),
        (b"RNS1", "truncated at byte 4"),
        (b"RNS1" + struct.pack("<I", 1), "ends before array 0"),
        (b"RNS1" + struct.pack("<IB", 1, 9), "claims 9 dimensions"),
        (b"RNS1" + struct.pack("<IB2I", 1, 2, 1, 4) + bytes(8), "needs 16 bytes, 8 remain"),
        (encode_states((np.ones(2, dtype=np.float32),)) + b"\x00", "1 trailing bytes"),
    ],
)
def test_malformed_values_fail_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(StateCodecError, match=message):
        decode_states(data)
