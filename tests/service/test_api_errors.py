"""Every bad request gets a clear 4xx problem+json, and no session's state changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from service_client import as_list, assert_problem, close, open_session, session, states_of, step
from service_models import VOCAB

GOOD_ROW = [[0.1, 0.2, 0.3]]  # one timestep of 3 features
GOOD = [GOOD_ROW, GOOD_ROW]  # batch 2


@pytest.fixture
def lstm_session(client: httpx.Client) -> Iterator[str]:
    """An LSTM session (batch 2) that has taken one step, so its state is not zeros."""
    sid = open_session(client, "lstm", batch_size=2)["session_id"]
    step(client, sid, np.asarray([[[0.5, -0.5, 1.0]], [[1.0, 0.0, -1.0]]]))
    yield sid
    client.delete(f"/v1/sessions/{sid}")


def post_raw(client: httpx.Client, path: str, content: bytes | str) -> httpx.Response:
    return client.post(path, content=content, headers={"content-type": "application/json"})


def step_body(**fields: Any) -> bytes:
    return orjson.dumps({"inputs": GOOD, **fields})


BAD_STEPS: dict[str, tuple[bytes | str, int, str]] = {
    "wrong feature size": (orjson.dumps({"inputs": [[[1.0, 2.0]], [[1.0, 2.0]]]}), 400, "dimension 2 must be 3"),
    "wrong rank": (orjson.dumps({"inputs": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]}), 400, "must have 3 dimensions"),
    "wrong batch size": (orjson.dumps({"inputs": [GOOD_ROW] * 3}), 400, "batch size 2"),
    "strings": (orjson.dumps({"inputs": [[["a", "b", "c"]], GOOD_ROW]}), 400, "strings"),
    "numeric strings": (orjson.dumps({"inputs": [[["1", "2", "3"]], [["1", "2", "3"]]]}), 400, "strings"),
    "ragged": (orjson.dumps({"inputs": [GOOD_ROW, [[0.1, 0.2, 0.3], [0.1, 0.2]]]}), 400, "rectangular"),
    "null inside": (orjson.dumps({"inputs": [[[0.1, None, 0.3]], GOOD_ROW]}), 400, "null"),
    "booleans": (orjson.dumps({"inputs": [[[True, False, True]], [[True, False, True]]]}), 400, "bool"),
    "NaN literal": ('{"inputs": [[[NaN, 0.2, 0.3]], [[0.1, 0.2, 0.3]]]}', 400, "not valid JSON"),
    "Infinity literal": ('{"inputs": [[[Infinity, 0.2, 0.3]], [[0.1, 0.2, 0.3]]]}', 400, "not valid JSON"),
    "number beyond double": ('{"inputs": [[[1e400, 0.2, 0.3]], [[0.1, 0.2, 0.3]]]}', 400, "not valid JSON"),
    "beyond float32": (orjson.dumps({"inputs": [[[1e39, 0.2, 0.3]], GOOD_ROW]}), 400, "float32"),
    "missing inputs": (orjson.dumps({"input": GOOD}), 400, "inputs"),
    "inputs not a list": (orjson.dumps({"inputs": "0.1 0.2 0.3"}), 400, "nested list"),
    "scalar inputs": (orjson.dumps({"inputs": 3}), 400, "nested list"),
    "unknown input name": (orjson.dumps({"inputs": {"z": GOOD}}), 400, "unknown ['z']"),
    "mask of the wrong shape": (step_body(mask=[[True, True]]), 400, "mask must have shape"),
    "mask of floats": (step_body(mask=[[0.5], [1.0]]), 400, "mask must hold booleans"),
    "negative seq": (step_body(seq=-1), 400, "seq must be >= 0"),
    "seq as a string": (step_body(seq="1"), 400, "seq must be an integer"),
    "return_state not a bool": (step_body(return_state="yes"), 400, "return_state"),
    "body not an object": (orjson.dumps([GOOD]), 400, "JSON object"),
    "invalid JSON": ('{"inputs": [[[0.1, 0.2, 0.3]]', 400, "not valid JSON"),
    "empty body": (b"", 400, "empty"),
    "deeply nested JSON": ("[" * 50_000 + "]" * 50_000, 400, "not valid JSON"),
    "nested deeper than any tensor": (orjson.dumps({"inputs": [[[[[[[[0.1]]]]]]]]}), 400, "dimensions"),
    "nested beyond numpy": ('{"inputs": ' + "[" * 80 + "1" + "]" * 80 + "}", 400, "rectangular"),
    "too many timesteps": (orjson.dumps({"inputs": [GOOD_ROW * 1001] * 2}), 413, "timesteps"),
}


@pytest.mark.parametrize("case", list(BAD_STEPS))
def test_a_bad_step_is_a_4xx_problem_and_the_session_is_unchanged(
    client: httpx.Client, lstm_session: str, case: str
) -> None:
    content, status, detail = BAD_STEPS[case]
    before = session(client, lstm_session)

    assert_problem(post_raw(client, f"/v1/sessions/{lstm_session}/step", content), status, contains=detail)

    after = session(client, lstm_session)
    assert (after["step"], after["states"]) == (before["step"], before["states"])


def test_a_huge_body_is_413_and_the_session_is_unchanged(client: httpx.Client, lstm_session: str) -> None:
    before = session(client, lstm_session)
    huge = b'{"inputs": [' + b"0.123456789," * 200_000 + b"0]}"  # 2.4 MB, the test server allows 1 MiB
    assert_problem(post_raw(client, f"/v1/sessions/{lstm_session}/step", huge), 413, contains="limit")
    chunked = client.post(
        f"/v1/sessions/{lstm_session}/step", content=iter([huge[:700_000], huge[700_000:]])
    )  # no Content-Length: counted while read
    assert_problem(chunked, 413, contains="limit")
    assert session(client, lstm_session)["states"] == before["states"]


@pytest.mark.parametrize(
    ("states", "detail"),
    [
        ([[[0.0] * 4] * 2], "expected 2 state arrays"),  # one state for an LSTM
        ([[[0.0] * 5] * 2, [[0.0] * 4] * 2], "must have shape [2, 4]"),  # wrong units
        ([[[0.0] * 4] * 3, [[0.0] * 4] * 3], "must have shape [2, 4]"),  # wrong batch
        ([[[float("1e39")] * 4] * 2, [[0.0] * 4] * 2], "float32"),
        ([[["x"] * 4] * 2, [[0.0] * 4] * 2], "strings"),
        ("zeros", "list"),
    ],
)
def test_reset_with_bad_states_is_400_and_changes_nothing(
    client: httpx.Client, lstm_session: str, states: Any, detail: str
) -> None:
    before = session(client, lstm_session)
    response = client.post(f"/v1/sessions/{lstm_session}/reset", json={"states": states})
    assert_problem(response, 400, contains=detail)
    after = session(client, lstm_session)
    assert (after["step"], after["states"]) == (before["step"], before["states"])


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"model": "lstm", "batch_size": 0}, 400, "batch_size must be >= 1"),
        ({"model": "lstm", "batch_size": "2"}, 400, "batch_size must be an integer"),
        ({"model": "lstm", "batch_size": 10**6}, 413, "batch size"),
        ({"model": "lstm", "initial_state": [[[0.0] * 4]]}, 400, "expected 2 state arrays"),
        ({"model": "lstm", "ttl_s": "long"}, 400, "ttl_s must be a number"),
        ({"batch_size": 1}, 400, "model is required"),
        ({"model": 5}, 400, "model is required"),
    ],
)
def test_bad_session_creation_is_a_4xx_problem(client: httpx.Client, body: dict, status: int, detail: str) -> None:
    active = client.get("/metrics").text.count("rnnserve_sessions_created_total 0.0")
    assert_problem(client.post("/v1/sessions", json=body), status, contains=detail)
    assert client.get("/metrics").text.count("rnnserve_sessions_created_total 0.0") == active


@pytest.mark.parametrize(
    ("model", "body", "detail"),
    [
        ("tokens", {"inputs": [[1.5, 2.0]]}, "integer token ids"),
        ("tokens", {"inputs": [[1, -2]]}, ">= 0"),
        ("tokens", {"inputs": [[1, 2**70]]}, "integer token ids"),  # orjson reads it as a float
        ("lstm", {"inputs": [GOOD_ROW], "initial_state": [[[0.0] * 4]]}, "expected 2 state arrays"),
        ("lstm", {"inputs": [GOOD_ROW], "time_major": 1}, "time_major must be true or false"),
        ("lstm", {"inputs": [[]]}, "must have 3 dimensions"),
        ("lstm", {"inputs": {"x": [GOOD_ROW], "extra": [GOOD_ROW]}}, "unknown ['extra']"),
    ],
)
def test_bad_predict_is_400(client: httpx.Client, model: str, body: dict, detail: str) -> None:
    assert_problem(client.post(f"/v1/models/{model}/predict", json=body), 400, contains=detail)


def test_token_ids_beyond_the_vocabulary_are_refused_before_the_model_runs(client: httpx.Client) -> None:
    # onnxruntime's CPU gather rejects such an id, but a CUDA gather reads past its table without an error: the
    # bound (the Embedding's input_dim) is checked with the other input checks, on every provider.
    for ids in ([[1, VOCAB]], [[1, 99]]):
        response = client.post("/v1/models/tokens/predict", json={"inputs": ids})
        assert_problem(response, 400, contains=f"token ids below {VOCAB}")
    assert client.post("/v1/models/tokens/predict", json={"inputs": [[0, VOCAB - 1]]}).status_code == 200
    sid = open_session(client, "tokens")["session_id"]
    before = step(client, sid, [[3, 4]], return_state=True)
    response = client.post(f"/v1/sessions/{sid}/step", json={"inputs": [[5, VOCAB]]})
    assert_problem(response, 400, contains=f"token ids below {VOCAB}")
    after = session(client, sid)
    assert after["step"] == before["step"] == 2
    assert all(close(a, b) for a, b in zip(states_of(after), states_of(before), strict=True))
    assert client.get("/healthz").status_code == 200


def test_unknown_sessions_are_404_problems_everywhere(client: httpx.Client) -> None:
    for method, path, body in [
        ("GET", "/v1/sessions/nope", None),
        ("DELETE", "/v1/sessions/nope", None),
        ("POST", "/v1/sessions/nope/step", {"inputs": [GOOD_ROW]}),
        ("POST", "/v1/sessions/nope/reset", {}),
    ]:
        assert_problem(client.request(method, path, json=body), 404, contains="nope")


def test_unknown_routes_and_methods_are_problems_too(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, contains="/v1/nothing-here")
    assert_problem(client.put("/v1/models"), 405, contains="PUT")


def test_the_session_survives_a_burst_of_garbage(client: httpx.Client, lstm_session: str) -> None:
    before = session(client, lstm_session)
    for content, _, _ in BAD_STEPS.values():
        assert 400 <= post_raw(client, f"/v1/sessions/{lstm_session}/step", content).status_code < 500
    good = step(client, lstm_session, np.asarray(GOOD), seq=before["step"])
    assert good["step"] == before["step"] + 1
    assert as_list(np.asarray(session(client, lstm_session)["states"])) != before["states"]
