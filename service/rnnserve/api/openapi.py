"""The OpenAPI 3.1 description of the API: every /v1 and /v2 route, the hot ones included, with its request and
response schemas (JSON and raw tensor bytes with their headers and query parameters), every error status it
answers (problem+json on /v1 and everywhere else, `{"error"}` on /v2), the API key, the links that chain a
session's routes (create -> step, get, reset, stream, delete), and the WebSocket streams as `x-websocket`
extensions of their path items (OpenAPI has no WebSocket operations; the message formats are in docs/API.md).

`OPERATIONS` describes each route once, by `(method, path)`. `openapi_schema(app)` starts from FastAPI's schema
(so a route added without a description still appears), replaces each described operation with its description,
adds the hot routes (`rnnserve.api.routes.HOT_ROUTES`, which FastAPI does not see), and names the models the
server has loaded as the values of `{model}`, so a client or a fuzzer can reach a real model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from rnnserve import errors
from rnnserve.api.edge import PROBLEM_JSON, V2_PREFIX, HotRoute
from rnnserve.api.v2.tensors import DATATYPES, HEADER_LENGTH
from rnnserve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from rnnserve.settings import Settings

JSON = "application/json"
BINARY = "application/octet-stream"
REFERENCE = "docs/API.md"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


_ARRAY: Schema = {
    "type": "array",
    "description": "A nested array of numbers (booleans for a mask), as deep as the tensor's rank: [batch][time]"
    "[features] in the batch-major layout, [time][batch][features] in the time-major one.",
}
_FLAG: Schema = {"type": ["boolean", "null"]}
_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
_TENSOR: Schema = {
    "type": "object",
    "required": ["name", "shape", "dtype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": ["integer", "null"]}, "description": "null: a free dimension"},
        "dtype": {"type": "string", "enum": ["float32", "int64", "bool"]},
        "vocabulary": {"type": "integer", "description": "token ids must be below it (int64 token inputs)"},
        "layer": {"type": "string", "description": "the Keras layer that holds this state"},
    },
}
_V2_TENSOR_META: Schema = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "-1: a free dimension"},
    },
}
_PARAMETERS: Schema = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "integer", "boolean"]},
}
_V2_INPUT: Schema = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "parameters": {
            **_PARAMETERS,
            "description": "`binary_data_size`: the tensor's bytes follow the JSON header in the body",
        },
        "data": {"description": "the tensor's values, flat or nested, row-major (absent when sent as binary)"},
    },
}
_V2_OUTPUT: Schema = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": {**_PARAMETERS, "description": "`binary_data_size` when the values follow as raw bytes"},
        "data": {"type": "array", "description": "the values, flat, row-major (absent when sent as binary)"},
    },
}

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "description": "An RFC 9457 problem; `type` is one of the problem types of " + REFERENCE + " (#errors).",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "examples": [errors.SessionNotFound.type]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "step": {"type": "integer", "description": "seq-conflict: the session's step now"},
        },
    },
    "V2Error": {
        "type": "object",
        "description": "An error of the Open Inference Protocol",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Tensor": _TENSOR,
    "Model": {
        "type": "object",
        "required": ["name", "status", "inputs", "outputs", "states", "stateful", "sessions", "source"],
        "properties": {
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["loading", "ready", "failed"]},
            "inputs": {"type": "array", "items": ref("Tensor")},
            "outputs": {"type": "array", "items": ref("Tensor")},
            "states": {"type": "array", "items": ref("Tensor")},
            "stateful": {"type": "boolean"},
            "batch_size": {"type": ["integer", "null"]},
            "time_major": {"type": "boolean"},
            "bidirectional": {"type": "boolean"},
            "sessions": {"type": "boolean", "description": "whether the model serves sessions"},
            "source": {"type": "string"},
            "provider": {"type": ["string", "null"]},
            "load_seconds": {"type": ["number", "null"]},
            "penalties": {"type": ["object", "null"], "description": "weight regularizers' penalties"},
            "constraints": {"type": ["array", "null"], "description": "weight constraints, each satisfied or not"},
            "error": {"type": "string", "description": "why a failed model failed"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["models"],
        "properties": {"models": {"type": "array", "items": ref("Model")}},
    },
    "PredictRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "oneOf": [_ARRAY, {"type": "object", "additionalProperties": _ARRAY}],
                "description": "[batch][time][features], or an object of such arrays by input name",
            },
            "mask": nullable({**_ARRAY, "description": "[batch][time] booleans; false: the timestep is skipped"}),
            "initial_state": nullable({"type": "array", "items": _ARRAY, "description": "[batch][units] per state"}),
            "time_major": _FLAG,
            "return_state": _FLAG,
            "return_losses": _FLAG,
            "dropout": {"type": ["object", "null"], "description": "Monte-Carlo dropout: samples, seed, reduce"},
        },
    },
    "PredictResponse": {
        "type": "object",
        "required": ["outputs"],
        "properties": {
            "outputs": {"description": "one array, or an object of arrays by output name"},
            "states": {"type": "array", "items": _ARRAY},
            "losses": {"type": "object"},
            "dropout": {"type": "object"},
        },
    },
    "CreateSession": {
        "type": "object",
        "required": ["model"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "batch_size": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "rows; more than the server's max_request_batch answer 413",
            },
            "initial_state": nullable({"type": "array", "items": _ARRAY}),
            "ttl_s": {"type": ["number", "null"], "description": "idle seconds before the session expires"},
        },
    },
    "Session": {
        "type": "object",
        "required": ["session_id", "model", "batch_size", "step", "expires_at"],
        "properties": {
            "session_id": {"type": "string"},
            "model": {"type": "string"},
            "batch_size": {"type": "integer"},
            "step": {"type": "integer", "minimum": 0},
            "expires_at": _TIME,
            "states": {"type": "array", "items": _ARRAY, "description": "[batch][units] per state (GET only)"},
        },
    },
    "SessionPage": {
        "type": "object",
        "required": ["sessions", "next_cursor"],
        "properties": {
            "sessions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["session_id", "model", "step", "batch_size", "expires_at", "created_at"],
                    "properties": {
                        "session_id": {"type": "string"},
                        "model": {"type": "string"},
                        "step": {"type": "integer"},
                        "batch_size": {"type": "integer"},
                        "expires_at": _TIME,
                        "created_at": _TIME,
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"], "description": "null after the last page"},
        },
    },
    "StepRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {},  # PredictRequest's, set below
            "mask": nullable(_ARRAY),
            "seq": {"type": ["integer", "null"], "minimum": 0, "description": "the step this chunk starts at"},
            "time_major": _FLAG,
            "return_state": _FLAG,
            "dropout": {"type": ["object", "null"], "description": "a what-if: Monte-Carlo samples, no commit"},
        },
    },
    "StepResponse": {
        "type": "object",
        "required": ["outputs", "step"],
        "properties": {
            "outputs": {"description": "one array, or an object of arrays by output name"},
            "states": {"type": "array", "items": _ARRAY},
            "step": {"type": "integer", "description": "the session's step after this chunk"},
            "session_id": {"type": "string"},
            "dropout": {"type": "object"},
        },
    },
    "ResetRequest": {
        "type": "object",
        "properties": {
            "states": nullable({"type": "array", "items": _ARRAY}),
            "layers": nullable({"type": "array", "items": {"type": "string"}}),
        },
    },
    "ResetResponse": {
        "type": "object",
        "required": ["step", "session_id"],
        "properties": {
            "step": {"type": "integer", "const": 0},
            "session_id": {"type": "string"},
            "layers": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "models", "store"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "models": {"type": "object", "additionalProperties": {"type": "string"}},
            "store": {"type": "string", "enum": ["ok", "down"]},
            "failed": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        },
    },
    "V2ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _V2_TENSOR_META},
            "outputs": {"type": "array", "items": _V2_TENSOR_META},
            "optional_inputs": {"type": "array", "items": _V2_TENSOR_META},
            "optional_outputs": {"type": "array", "items": _V2_TENSOR_META},
            "sequences": {"type": "boolean"},
        },
    },
    "V2ModelConfig": {
        "type": "object",
        "description": "The parts of a Triton model configuration (model_config.proto) that apply",
        "required": ["name", "platform", "max_batch_size", "input", "output"],
        "properties": {
            "name": {"type": "string"},
            "platform": {"type": "string"},
            "backend": {"type": "string"},
            "version_policy": {"type": "object"},
            "max_batch_size": {"type": "integer", "minimum": 0},
            "input": {"type": "array", "items": {"type": "object"}},
            "output": {"type": "array", "items": {"type": "object"}},
            "sequence_batching": {"type": "object"},
        },
    },
    "V2Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "V2Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
    "V2ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "V2InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                **_PARAMETERS,
                "description": "`sequence_id` (unsigned integer or string), `sequence_start`, `sequence_end`, "
                "`binary_data_output`",
            },
            "inputs": {"type": "array", "items": _V2_INPUT},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
                },
            },
        },
    },
    "V2InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": _V2_OUTPUT},
        },
    },
}
SCHEMAS["StepRequest"]["properties"]["inputs"] = SCHEMAS["PredictRequest"]["properties"]["inputs"]


# ---- parameters and headers ---------------------------------------------------------------------------------------


def path_param(name: str, description: str = "") -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def header(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "header", "required": False, "schema": schema, "description": description}


_BOOL_TEXT: Schema = {"type": "string", "enum": ["true", "false", "1", "0"]}
_SHAPE_TEXT: Schema = {"type": "string", "pattern": r"^[0-9A-Za-z_:/,;=.-]+$"}


def binary_options(with_seq: bool) -> list[Schema]:
    """The options of a /v1 binary request, as query parameters or X- headers (both must agree when both come)."""
    found = [
        query("shape", _SHAPE_TEXT, "binary body: the input's shape `B,T,F` (`name=B,T,F;name2=B,T` for several)"),
        header("X-Shape", _SHAPE_TEXT, "binary body: as `?shape=`"),
        query("return_state", _BOOL_TEXT, "binary body: append the states to the reply"),
        header("X-Return-State", _BOOL_TEXT, "as `?return_state=`"),
        query("time_major", _BOOL_TEXT, "binary body: the body's layout is (time, batch, ...)"),
        header("X-Time-Major", _BOOL_TEXT, "as `?time_major=`"),
    ]
    if with_seq:
        seq = {"type": "string", "pattern": "^[0-9]+$"}
        found += [query("seq", seq, "binary body: as the JSON `seq`"), header("X-Seq", seq, "as `?seq=`")]
    return found


_ENCODING = header("Content-Encoding", {"type": "string", "enum": ["gzip", "deflate", "identity"]}, "a compressed body")
_BINARY_REPLY_HEADERS = {
    "X-Tensors": {
        "description": "binary reply: each tensor's name and shape, in body order (`name=B,T,U;...`)",
        "schema": {"type": "string"},
    },
}


# ---- operations ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One route's description. `answer`: the success reply's content (None: no body); `errors`: every error
    status the route answers; `auth`: behind the API key."""

    operation_id: str
    summary: str
    tags: tuple[str, ...]
    description: str = ""
    status: int = 200
    answer: dict[str, Schema] | None = field(default_factory=lambda: {JSON: {"schema": {}}})
    answer_headers: dict[str, Schema] = field(default_factory=dict)
    body: dict[str, Schema] | None = None
    body_required: bool = True
    parameters: tuple[Schema, ...] = ()
    errors: tuple[int, ...] = ()
    auth: bool = True
    links: dict[str, Schema] = field(default_factory=dict)
    extra_answers: dict[int, Schema] = field(default_factory=dict)  # other non-error statuses (a 400 "not ready")


_MODEL = path_param("model", "a served model's name")
_VERSION = {**path_param("version", "the model's version: `1`"), "schema": {"type": "string", "enum": ["1"]}}
_SESSION = path_param("session_id", "the id `POST /v1/sessions` answered")
_SESSION_ID = {"session_id": "$response.body#/session_id"}


def _session_links() -> dict[str, Schema]:
    return {
        name: {"operationId": op, "parameters": _SESSION_ID, "description": description}
        for name, op, description in (
            ("StepSession", "step_session", "feed the session its next timesteps"),
            ("GetSession", "get_session", "read the session's step and states"),
            ("ResetSession", "reset_session", "reset the session's states"),
            ("DeleteSession", "delete_session", "delete the session"),
        )
    }


_V2_JSON_OR_BINARY: dict[str, Schema] = {
    JSON: {"schema": ref("V2InferRequest")},
    BINARY: {
        "schema": {"type": "string", "format": "binary"},
        "description": f"the JSON request (its length in `{HEADER_LENGTH}`) followed by the inputs' raw bytes",
    },
}

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation(
        "healthz",
        "Liveness: 200 while the process runs",
        ("health",),
        answer={JSON: {"schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}},
        auth=False,
    ),
    ("GET", "/readyz"): Operation(
        "readyz",
        "Readiness: 200 once every model has loaded and the session store answers",
        ("health",),
        answer={JSON: {"schema": ref("Readiness")}},
        extra_answers={503: {"description": "not ready (yet)", "content": {JSON: {"schema": ref("Readiness")}}}},
        auth=False,
    ),
    ("GET", "/metrics"): Operation(
        "metrics",
        "Prometheus text exposition",
        ("health",),
        answer={METRICS_CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
        auth=False,
    ),
    ("GET", "/v1/models"): Operation(
        "list_models", "Every model with its signature", ("models",), answer={JSON: {"schema": ref("ModelList")}}
    ),
    ("GET", "/v1/models/{model}"): Operation(
        "get_model",
        "One model with its signature",
        ("models",),
        answer={JSON: {"schema": ref("Model")}},
        parameters=(_MODEL,),
        errors=(404,),
    ),
    ("POST", "/v1/models/{model}/predict"): Operation(
        "predict",
        "Predict whole sequences, JSON or raw tensor bytes",
        ("models",),
        description="Stateless inference. A binary body (`application/octet-stream`) holds the inputs' raw "
        "little-endian bytes with the shape in `?shape=` or `X-Shape`; the reply is then raw bytes described by "
        "`X-Tensors` (ask for it with `Accept`).",
        body={JSON: {"schema": ref("PredictRequest")}, BINARY: {"schema": {"type": "string", "format": "binary"}}},
        answer={JSON: {"schema": ref("PredictResponse")}, BINARY: {"schema": {"type": "string", "format": "binary"}}},
        answer_headers=_BINARY_REPLY_HEADERS,
        parameters=(_MODEL, *binary_options(with_seq=False)),
        errors=(400, 404, 413, 503),
    ),
    ("GET", "/v1/sessions"): Operation(
        "list_sessions",
        "The live sessions, a page at a time, by model",
        ("sessions",),
        answer={JSON: {"schema": ref("SessionPage")}},
        parameters=(
            query("model", {"type": "string"}, "only the sessions of this model"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "most on one page"),
            query("cursor", {"type": "string"}, "the previous page's `next_cursor`"),
        ),
        errors=(400, 503),
    ),
    ("POST", "/v1/sessions"): Operation(
        "create_session",
        "Open a session (a stateful stream of one model)",
        ("sessions",),
        status=201,
        body={JSON: {"schema": ref("CreateSession")}},
        answer={JSON: {"schema": ref("Session")}},
        answer_headers={"Location": {"description": "the session's URL", "schema": {"type": "string"}}},
        errors=(400, 404, 409, 413, 429, 503),
        links=_session_links(),
    ),
    ("GET", "/v1/sessions/{session_id}"): Operation(
        "get_session",
        "A session's step, expiry and hidden states",
        ("sessions",),
        answer={JSON: {"schema": ref("Session")}},
        parameters=(_SESSION,),
        errors=(404, 503),
    ),
    ("DELETE", "/v1/sessions/{session_id}"): Operation(
        "delete_session",
        "Delete a session",
        ("sessions",),
        status=204,
        answer=None,
        parameters=(_SESSION,),
        errors=(404, 503),
    ),
    ("POST", "/v1/sessions/{session_id}/step"): Operation(
        "step_session",
        "Step a session: the next timesteps, JSON or raw tensor bytes",
        ("sessions",),
        description="Feeds the next chunk; `seq` (the step the chunk starts at) makes a retry safe. A binary "
        "body takes `?shape=`/`X-Shape` and `?seq=`/`X-Seq`; a binary reply adds `X-Step`.",
        body={JSON: {"schema": ref("StepRequest")}, BINARY: {"schema": {"type": "string", "format": "binary"}}},
        answer={JSON: {"schema": ref("StepResponse")}, BINARY: {"schema": {"type": "string", "format": "binary"}}},
        answer_headers={
            **_BINARY_REPLY_HEADERS,
            "X-Step": {
                "description": "binary reply: the session's step after this chunk",
                "schema": {"type": "string"},
            },
        },
        parameters=(_SESSION, *binary_options(with_seq=True)),
        errors=(400, 404, 409, 413, 503),
        links={"GetSession": _session_links()["GetSession"], "StepAgain": _session_links()["StepSession"]},
    ),
    ("POST", "/v1/sessions/{session_id}/reset"): Operation(
        "reset_session",
        "Reset a session's states (Keras reset_states), to zeros or given states, of all layers or some",
        ("sessions",),
        body={JSON: {"schema": ref("ResetRequest")}},
        body_required=False,
        answer={JSON: {"schema": ref("ResetResponse")}},
        parameters=(_SESSION,),
        errors=(400, 404, 409, 413, 503),
        links={"GetSession": _session_links()["GetSession"], "DeleteSession": _session_links()["DeleteSession"]},
    ),
    ("GET", "/v2"): Operation(
        "v2_server_metadata", "Server metadata", ("v2",), answer={JSON: {"schema": ref("V2ServerMetadata")}}
    ),
    ("GET", "/v2/health/live"): Operation(
        "v2_live", "Liveness", ("v2",), answer={JSON: {"schema": ref("V2Live")}}, auth=False
    ),
    ("GET", "/v2/health/ready"): Operation(
        "v2_ready",
        "Readiness (as /readyz): 200 ready, 400 not ready",
        ("v2",),
        answer={JSON: {"schema": ref("V2Ready")}},
        extra_answers={400: {"description": "not ready", "content": {JSON: {"schema": ref("V2Ready")}}}},
        auth=False,
    ),
}


def _v2_model_routes() -> None:
    """The /v2 model routes, each under `/v2/models/{model}` and `/v2/models/{model}/versions/{version}`."""
    for base, params, suffix in (
        ("/v2/models/{model}", (_MODEL,), ""),
        ("/v2/models/{model}/versions/{version}", (_MODEL, _VERSION), "_version"),
    ):
        OPERATIONS["GET", base] = Operation(
            f"v2_model_metadata{suffix}",
            "Model metadata",
            ("v2",),
            answer={JSON: {"schema": ref("V2ModelMetadata")}},
            parameters=params,
            errors=(404, 503),
        )
        OPERATIONS["GET", base + "/config"] = Operation(
            f"v2_model_config{suffix}",
            "Triton's model configuration, the parts that apply",
            ("v2",),
            answer={JSON: {"schema": ref("V2ModelConfig")}},
            parameters=params,
            errors=(404, 503),
        )
        OPERATIONS["GET", base + "/ready"] = Operation(
            f"v2_model_ready{suffix}",
            "Model readiness: 200 ready, 400 loading or failed",
            ("v2",),
            answer={JSON: {"schema": ref("V2ModelReady")}},
            extra_answers={400: {"description": "not ready", "content": {JSON: {"schema": ref("V2ModelReady")}}}},
            parameters=params,
            errors=(404,),
        )
        OPERATIONS["POST", base + "/infer"] = Operation(
            f"v2_infer{suffix}",
            "Infer (Open Inference Protocol), with binary tensor data and sequences",
            ("v2",),
            description=f"JSON, or (`application/octet-stream`) a JSON header of `{HEADER_LENGTH}` bytes followed "
            "by the binary inputs. Sequences: `parameters.sequence_id`, `sequence_start`, `sequence_end`.",
            body=_V2_JSON_OR_BINARY,
            answer={
                JSON: {"schema": ref("V2InferResponse")},
                BINARY: {"schema": {"type": "string", "format": "binary"}},
            },
            answer_headers={
                HEADER_LENGTH: {"description": "binary reply: the JSON part's length", "schema": {"type": "string"}}
            },
            parameters=(
                *params,
                header(HEADER_LENGTH, {"type": "string", "pattern": "^[0-9]+$"}, "binary body: the JSON's length"),
                _ENCODING,
            ),
            errors=(400, 404, 409, 413, 503),
        )


_v2_model_routes()

_ERROR_TEXT = {
    400: "invalid input or request",
    401: "the API key is missing or wrong",
    404: "unknown model, session or version",
    409: "a stale `seq`, a concurrent change, or a model that serves no sessions",
    413: "the body, the work or the reply exceeds a limit",
    429: "the session store is full",
    503: "the model is not ready, or the session store is unavailable",
}


def _operation(path: str, op: Operation, models: list[str], settings: Settings | None) -> Schema:
    v2 = path.startswith(V2_PREFIX)
    error_content = {JSON: {"schema": ref("V2Error")}} if v2 else {PROBLEM_JSON: {"schema": ref("Problem")}}
    parameters = []
    for param in op.parameters:
        if param["in"] == "path" and param["name"] == "model" and models:
            param = {**param, "schema": {"type": "string", "enum": models}}
        parameters.append(param)
    success: Schema = {"description": "Successful Response"}
    if op.answer is not None:
        success["content"] = op.answer
    if op.answer_headers:
        success["headers"] = op.answer_headers
    if op.links:
        success["links"] = op.links
    responses: dict[str, Schema] = {str(op.status): success}
    responses.update({str(status): answer for status, answer in op.extra_answers.items()})
    statuses = sorted({*op.errors, *((401,) if op.auth else ())})
    for status in statuses:
        reply: Schema = {"description": _ERROR_TEXT[status], "content": error_content}
        if status == 401:
            reply["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}}
        responses[str(status)] = reply
    operation: Schema = {
        "tags": list(op.tags),
        "summary": op.summary,
        "operationId": op.operation_id,
        "responses": responses,
    }
    if op.description:
        operation["description"] = op.description
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        body = op.body
        if op.operation_id == "create_session":
            body = {JSON: {"schema": _create_session_schema(models, settings)}}
        operation["requestBody"] = {"required": op.body_required, "content": body}
    operation["security"] = [{"apiKey": []}] if op.auth else []
    return operation


def _create_session_schema(models: list[str], settings: Settings | None) -> Schema:
    """CreateSession with this server's models and its longest TTL. (More batch rows than `max_request_batch`
    answer 413, as any request past a limit does; the schema leaves that to the description.)"""
    properties = dict(SCHEMAS["CreateSession"]["properties"])
    if models:
        properties["model"] = {"type": "string", "enum": models}
    if settings is not None:
        properties["ttl_s"] = {**properties["ttl_s"], "exclusiveMinimum": 0, "maximum": settings.max_ttl_s}
    return {**SCHEMAS["CreateSession"], "properties": properties}


def _websocket(route: HotRoute) -> Schema:
    """A WebSocket route as a path item with no operation and an `x-websocket` extension."""
    params = [path_param(name) for name in re.findall(r"\{(\w+)\}", route.path)]
    item: Schema = {
        "summary": route.summary,
        "description": f"A WebSocket (`GET` with `Upgrade: websocket`). Its messages (JSON text and binary frames), "
        f"options and close codes are in {REFERENCE}.",
        "x-websocket": {
            "messages": f"{REFERENCE}#{_anchor(route)}",
            "auth": "Authorization: Bearer <key> on the upgrade request; a missing or wrong key closes with 1008",
            "close_codes": {
                "1003": "a frame the stream cannot take",
                "1008": "no or a wrong API key",
                "1011": "internal error",
                "4404": "the session does not exist or expired",
            },  # fmt: skip
        },
    }
    if params:
        item["parameters"] = params
    return item


def _anchor(route: HotRoute) -> str:
    """The GitHub-style anchor of the reference's heading for a route (`### \\`WS /path\\``)."""
    return re.sub(r"[^a-z0-9 _-]", "", f"ws {route.path}".lower()).replace(" ", "-")


def openapi_schema(
    app: FastAPI, hot: tuple[HotRoute, ...], models: list[str], settings: Settings | None = None
) -> Schema:
    """The whole document: FastAPI's, each described route replaced by its description, the hot routes added,
    `{model}` limited to `models` (the served models' names; none: any string) and the session limits to
    `settings`' (none: unbounded)."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version="3.1.0",
        summary="Keras recurrent models served with stateful sessions: /v1 and the Open Inference Protocol (/v2)",
        description=f"The full reference, with the WebSocket messages and the binary layouts, is {REFERENCE}.",
        routes=app.routes,
    )
    paths: dict[str, Schema] = schema.setdefault("paths", {})
    for route in hot:
        if route.method == "WS":
            paths[route.path] = _websocket(route)
    for (method, path), op in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = _operation(path, op, models, settings)
    components = schema.setdefault("components", {})
    components["schemas"] = {**components.get("schemas", {}), **SCHEMAS}
    components["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "the server's API key (when it has one)"}
    }
    return schema
