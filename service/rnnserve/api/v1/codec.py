"""/v1 JSON bodies <-> the data plane's requests and results, by hand with orjson (no pydantic on big arrays).

Request fields are read off the parsed object and type-checked one by one; tensors go straight to numpy
(`rnnserve.validation.decode_array`). Unknown fields are ignored. Responses are serialised with orjson's numpy
support (`rnnserve.api.edge.dumps`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import orjson

from rnnserve.api.edge import dumps as dumps  # re-exported: the /v1 adapters render JSON with it
from rnnserve.errors import InvalidInput, SessionNotFound
from rnnserve.inference import InferenceResult, PredictRequest, SessionInfo, StepRequest, StepResult
from rnnserve.mc_dropout import DropoutRequest
from rnnserve.validation import Tensors, decode_array

# ---- requests -----------------------------------------------------------------------------------------------------


def parse_object(body: bytes | str, what: str = "the request body") -> dict[str, Any]:
    """A JSON object; `InvalidInput` for malformed JSON (NaN/Infinity literals included) or another JSON type."""
    if not body:
        raise InvalidInput(f"{what} is empty: send a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def parse_predict(obj: dict[str, Any]) -> PredictRequest:
    """`{"inputs", "mask"?, "initial_state"?, "time_major"?, "return_state"?, "return_losses"?, "dropout"?}`"""
    return PredictRequest(
        inputs=_inputs(obj),
        mask=_optional_array(obj, "mask"),
        initial_state=parse_states(obj.get("initial_state"), "initial_state"),
        time_major=_optional_bool(obj, "time_major"),
        return_state=bool(_optional_bool(obj, "return_state")),
        return_losses=bool(_optional_bool(obj, "return_losses")),
        dropout=None if obj.get("dropout") is None else DropoutRequest.parse(obj["dropout"]),
    )


def parse_step(obj: dict[str, Any], raw: bytes | str, *, variant: bytes = b"") -> StepRequest:
    """`{"inputs", "mask"?, "seq"?, "time_major"?, "return_state"?, "dropout"?}`; `raw` (the body as sent) gives
    the digest of a request with `seq` (the only kind a retry can match), and `variant` names the reply format when
    it is not JSON (so that a retry only replays its own format)."""
    get = obj.get  # absent optional fields (the common case) cost one lookup each
    seq = None if get("seq") is None else optional_int(obj, "seq", minimum=0)
    request = StepRequest(
        _inputs(obj, booleans=_has_literal(raw, b"true") or _has_literal(raw, b"false")),
        None if get("mask") is None else _optional_array(obj, "mask"),
        seq,
        None if get("time_major") is None else _optional_bool(obj, "time_major"),
        get("return_state") is not None and bool(_optional_bool(obj, "return_state")),
        None if seq is None else body_digest(raw, variant),
    )
    dropout = get("dropout")  # positional fields above: building a NamedTuple by keyword costs more (bench/README.md)
    return request if dropout is None else request._replace(dropout=DropoutRequest.parse(dropout))


def body_digest(raw: bytes | str, variant: bytes = b"") -> bytes:
    """What identifies a request body (and the reply format it asked for) when its retry comes."""
    digest = hashlib.blake2b(raw.encode() if isinstance(raw, str) else raw, digest_size=16)
    if variant:
        digest.update(b"\0" + variant)
    return digest.digest()


def parse_reset(obj: dict[str, Any]) -> tuple[list[np.ndarray] | None, list[str] | None]:
    """`{"states"?: [...], "layers"?: ["name", ...]}` -> (states, layers): what a reset takes."""
    layers = obj.get("layers")
    if layers is not None and (not isinstance(layers, list) or not all(isinstance(n, str) for n in layers)):
        raise InvalidInput("layers must be a list of Keras layer names (the signature's states name their layer)")
    return parse_states(obj.get("states"), "states"), layers


def reset_json(info: SessionInfo, layers: list[str] | None) -> dict[str, Any]:
    """A reset's reply: `{"step": 0, "session_id", "layers"?}` (the layers reset, when the request named some)."""
    body: dict[str, Any] = {"step": info.step, "session_id": info.session_id}
    if layers is not None:
        body["layers"] = layers
    return body


def parse_states(value: Any, what: str) -> list[np.ndarray] | None:
    """A list holding one `[B][units]` array per state, or None when absent."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a list with one [batch][units] array per state")
    return [decode_array(v, f"{what}[{i}]") for i, v in enumerate(value)]


def optional_int(obj: dict[str, Any], key: str, *, minimum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{key} must be an integer, got {orjson.dumps(value).decode()[:40]}")
    if value < minimum:
        raise InvalidInput(f"{key} must be >= {minimum}, got {value}")
    return value


def optional_number(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{key} must be a number, got {orjson.dumps(value).decode()[:40]}")
    return float(value)


def required_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key} is required and must be a non-empty string")
    return value


def _inputs(obj: dict[str, Any], *, booleans: bool = True) -> Tensors:
    """The request's `inputs`; `booleans` False: its JSON text has no `true` or `false` anywhere, so no array needs
    searching for booleans (`decode_array`)."""
    value = obj.get("inputs")
    if value is None:
        raise InvalidInput('"inputs" is required: a [batch][time][features] array, or an object of them by name')
    if isinstance(value, dict):
        return {str(name): decode_array(v, f"inputs[{name!r}]", booleans=booleans) for name, v in value.items()}
    return decode_array(value, "inputs", booleans=booleans)


def _has_literal(raw: bytes | str, literal: bytes) -> bool:
    """Whether JSON text (the body an object was parsed from, or a serialisation of it) may hold `literal`."""
    return literal in raw if isinstance(raw, bytes) else literal.decode() in raw


def _optional_array(obj: dict[str, Any], key: str) -> np.ndarray | None:
    value = obj.get(key)
    return None if value is None else decode_array(value, key)


def _optional_bool(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput(f"{key} must be true or false, got {orjson.dumps(value).decode()[:40]}")


# ---- responses ----------------------------------------------------------------------------------------------------


def outputs_json(outputs: dict[str, np.ndarray]) -> Any:
    """The array itself for a single-output model, else an object keyed by output name in signature order."""
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return outputs


def encode_result(result: InferenceResult) -> bytes:
    body: dict[str, Any] = {"outputs": outputs_json(result.outputs)}
    if result.states is not None:
        body["states"] = result.states
    if result.losses is not None:
        body["losses"] = result.losses
    if result.dropout is not None:
        body["dropout"] = _dropout_json(result.dropout)
    return dumps(body)


def encode_step(result: StepResult) -> bytes:
    body: dict[str, Any] = {"outputs": outputs_json(result.outputs), "step": result.step}
    if result.states is not None:
        body["states"] = result.states
    if result.dropout is not None:
        body["dropout"] = _dropout_json(result.dropout)
    return dumps(body)


def _dropout_json(info: dict[str, Any]) -> dict[str, Any]:
    """`{"samples", "seed", "reduce", "outputs_std"?, "states_std"?}` (the std as the outputs are written)."""
    if "outputs_std" not in info:
        return info
    return {**info, "outputs_std": outputs_json(info["outputs_std"])}


def session_json(info: SessionInfo, *, with_states: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session_id": info.session_id,
        "model": info.model,
        "batch_size": info.batch_size,
        "step": info.step,
        "expires_at": info.expires_at_iso,
    }
    if with_states:
        body["states"] = list(info.states)
    return body


def v1_session_id(session_id: str) -> str:
    """A session id taken from a /v1 path. /v1 ids never contain ':'; ids that do name /v2 sequences
    (`rnnserve.sequences`), which /v1 does not reach: they answer as unknown."""
    if ":" in session_id:
        raise SessionNotFound(f"no session {session_id!r} (never created, deleted or expired)")
    return session_id
