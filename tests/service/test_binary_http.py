"""Binary tensors over HTTP: `application/octet-stream` step and predict bodies (raw little-endian float32, int64
for token ids) shaped by X-Shape or ?shape=, answered in raw bytes described by X-Step and X-Tensors. Same numbers,
validation, errors and retries as JSON."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from service_client import as_list, assert_problem, close, open_session, predict, session, step
from service_models import FEATURES, VOCAB

OCTET = "application/octet-stream"


def binary_step(
    client: httpx.Client, sid: str, x: np.ndarray, *, params: dict[str, str] | None = None, **headers: str
) -> httpx.Response:
    head = {"content-type": OCTET, "x-shape": ",".join(map(str, x.shape)), **headers}
    return client.post(f"/v1/sessions/{sid}/step", content=x.tobytes(), headers=head, params=params)


def tensors(response: httpx.Response) -> dict[str, np.ndarray]:
    """The body cut into arrays as its X-Tensors header describes (float32, concatenated in order)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == OCTET
    out: dict[str, np.ndarray] = {}
    offset = 0
    for part in response.headers["x-tensors"].split(";"):
        name, _, dims = part.rpartition("=")
        shape = tuple(int(d) for d in dims.split(","))
        count = int(np.prod(shape))
        out[name] = np.frombuffer(response.content, "<f4", count, offset).reshape(shape)
        offset += 4 * count
    assert offset == len(response.content)
    return out


def float_inputs(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


def test_a_binary_step_equals_the_json_step(client: httpx.Client, rng: np.random.Generator) -> None:
    x = float_inputs(rng, 2, 3, FEATURES)
    by_json = step(client, open_session(client, "lstm", batch_size=2)["session_id"], x, return_state=True)
    response = binary_step(client, open_session(client, "lstm", batch_size=2)["session_id"], x,
                           **{"x-return-state": "true"})  # fmt: skip
    got = tensors(response)
    assert response.headers["x-step"] == "3"
    assert response.headers["x-tensors"] == "y=2,3,4;states[0]=2,4;states[1]=2,4"
    assert close(got["y"], by_json["outputs"])
    assert close(got["states[0]"], by_json["states"][0]) and close(got["states[1]"], by_json["states"][1])


def test_shape_and_options_may_come_in_the_query(client: httpx.Client, rng: np.random.Generator) -> None:
    sid = open_session(client, "gru")["session_id"]
    x = float_inputs(rng, 1, 2, FEATURES)
    query = {"shape": "1,2,3", "seq": "0", "return_state": "1"}
    response = client.post(f"/v1/sessions/{sid}/step", content=x.tobytes(), headers={"content-type": OCTET},
                           params=query)  # fmt: skip
    got = tensors(response)
    assert response.headers["x-step"] == "2" and set(got) == {"y", "states[0]"}
    assert close(got["states[0]"], session(client, sid)["states"][0])


def test_a_query_and_a_header_that_disagree_are_refused(client: httpx.Client, rng: np.random.Generator) -> None:
    sid = open_session(client, "gru")["session_id"]
    x = float_inputs(rng, 1, 2, FEATURES)
    assert_problem(binary_step(client, sid, x, params={"shape": "1,1,6"}), 400, contains="query")
    assert session(client, sid)["step"] == 0


def test_token_ids_travel_as_int64(client: httpx.Client) -> None:
    ids = np.array([[1, 5, 0, 9]], dtype="<i8")
    by_json = step(client, open_session(client, "tokens")["session_id"], ids)
    got = tensors(binary_step(client, open_session(client, "tokens")["session_id"], ids))
    assert close(got["y"], by_json["outputs"])
    as_float = ids.astype(np.float32)  # right element count, wrong width: the body length gives it away
    assert_problem(binary_step(client, open_session(client, "tokens")["session_id"], as_float), 400, contains="int64")


def test_replies_follow_accept(client: httpx.Client, rng: np.random.Generator) -> None:
    x = float_inputs(rng, 1, 1, FEATURES)
    sid = open_session(client, "simple")["session_id"]
    as_bytes = client.post(f"/v1/sessions/{sid}/step", json={"inputs": as_list(x)}, headers={"accept": OCTET})
    assert as_bytes.headers["x-step"] == "1" and tensors(as_bytes)["y"].shape == (1, 1, 4)
    as_json = binary_step(client, sid, x, accept="application/json")
    assert as_json.headers["content-type"].startswith("application/json") and as_json.json()["step"] == 2
    whole = np.asarray(predict(client, "simple", np.concatenate([x, x], axis=1))["outputs"])
    assert close(as_json.json()["outputs"], whole[:, 1:])


@pytest.mark.parametrize(
    ("body", "headers", "status", "detail"),
    [
        (np.zeros((1, 1, FEATURES), np.float32).tobytes(), {}, 400, "X-Shape"),
        (np.zeros((1, 2, FEATURES), np.float32).tobytes(), {"x-shape": "1,1,3"}, 400, "12 are expected"),
        (np.zeros((1, 1, 4), np.float32).tobytes(), {"x-shape": "1,1,4"}, 400, "dimension 2 must be 3"),
        (np.full((1, 1, FEATURES), np.nan, np.float32).tobytes(), {"x-shape": "1,1,3"}, 400, "NaN"),
        (np.full((1, 1, FEATURES), np.inf, np.float32).tobytes(), {"x-shape": "1,1,3"}, 400, "Inf"),
        (np.zeros((2, 1, FEATURES), np.float32).tobytes(), {"x-shape": "2,1,3"}, 400, "batch size 1"),
        (b"", {"x-shape": "1,0,3"}, 400, "no timesteps"),
        (b"\0" * 12, {"x-shape": "1,1,three"}, 400, "integers"),
        (b"\0" * 12, {"x-shape": "y=1,1,3"}, 400, "missing ['x']"),
        (b"\0" * 12, {"x-shape": "1,1,3", "x-return-state": "maybe"}, 400, "true or false"),
        (b"\0" * 12, {"x-shape": "1,1,3", "x-seq": "-1"}, 400, "seq"),
    ],
    ids=["no shape", "length", "features", "nan", "inf", "batch", "no steps", "bad shape", "name", "flag", "seq"],
)
def test_bad_binary_steps_are_4xx_problems_and_change_nothing(
    client: httpx.Client, body: bytes, headers: dict[str, str], status: int, detail: str
) -> None:
    sid = open_session(client, "simple")["session_id"]
    step(client, sid, np.ones((1, 1, FEATURES)))
    before = session(client, sid)
    response = client.post(f"/v1/sessions/{sid}/step", content=body, headers={"content-type": OCTET, **headers})
    assert_problem(response, status, contains=detail)
    after = session(client, sid)
    assert (after["step"], after["states"]) == (before["step"], before["states"])


def test_a_binary_step_of_an_unknown_session_is_404(client: httpx.Client) -> None:
    assert_problem(binary_step(client, "nope", np.zeros((1, 1, FEATURES), np.float32)), 404, contains="nope")


def test_a_binary_body_over_the_limit_is_413(client: httpx.Client) -> None:
    sid = open_session(client, "simple")["session_id"]
    x = np.zeros((1, 90_000, FEATURES), np.float32)  # about 1.1 MB, over the test server's 1 MiB
    assert_problem(binary_step(client, sid, x), 413)
    assert session(client, sid)["step"] == 0


def test_a_binary_retry_replays_the_same_bytes_once(client: httpx.Client, rng: np.random.Generator) -> None:
    sid = open_session(client, "gru")["session_id"]
    x = float_inputs(rng, 1, 2, FEATURES)
    first = binary_step(client, sid, x, **{"x-seq": "0"})
    again = binary_step(client, sid, x, **{"x-seq": "0"})
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["x-step"] == first.headers["x-step"] == "2"
    assert again.headers["x-tensors"] == first.headers["x-tensors"]
    assert session(client, sid)["step"] == 2
    as_json = client.post(f"/v1/sessions/{sid}/step", json={"inputs": as_list(x), "seq": 0})
    assert_problem(as_json, 409)  # another request (another body): a conflict, not a replay


def binary_predict(client: httpx.Client, model: str, x: np.ndarray, **params: str) -> httpx.Response:
    query = {"shape": ",".join(map(str, x.shape)), **params}
    return client.post(f"/v1/models/{model}/predict", content=x.tobytes(), headers={"content-type": OCTET},
                       params=query)  # fmt: skip


def test_a_binary_predict_equals_the_json_predict(client: httpx.Client, rng: np.random.Generator) -> None:
    x = float_inputs(rng, 2, 3, FEATURES)
    by_json = predict(client, "lstm_state", x, return_state=True)
    response = binary_predict(client, "lstm_state", x, return_state="true")
    got = tensors(response)
    assert "x-step" not in response.headers
    assert list(got) == ["y", "h", "c", "states[0]", "states[1]"]
    for name in ("y", "h", "c"):
        assert close(got[name], by_json["outputs"][name])
    assert close(got["states[0]"], by_json["states"][0]) and close(got["states[1]"], by_json["states"][1])


def test_binary_bodies_may_be_time_major(client: httpx.Client, rng: np.random.Generator) -> None:
    x = float_inputs(rng, 2, 3, FEATURES)  # batch-major
    by_json: Any = predict(client, "simple", x)["outputs"]
    got = tensors(binary_predict(client, "simple", np.ascontiguousarray(x.swapaxes(0, 1)), time_major="true"))
    assert got["y"].shape == (3, 2, 4) and close(got["y"].swapaxes(0, 1), by_json)
    native = tensors(binary_predict(client, "time_major", np.ascontiguousarray(x.swapaxes(0, 1))))
    assert native["y"].shape == (3, 2, 3)


def test_a_binary_predict_of_an_unknown_model_is_404(client: httpx.Client) -> None:
    assert_problem(binary_predict(client, "nope", np.zeros((1, 1, FEATURES), np.float32)), 404, contains="nope")


def test_token_ids_beyond_the_vocabulary_are_400_in_binary_too(client: httpx.Client) -> None:
    ids = np.array([[1, VOCAB + 5]], dtype="<i8")
    assert_problem(binary_predict(client, "tokens", ids), 400, contains=f"token ids below {VOCAB}")
