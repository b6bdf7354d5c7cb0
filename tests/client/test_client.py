"""`rnnserve.client.Client` against a real server: predict and sessions with numpy in and out, binary and JSON,
seq kept across steps, the typed exceptions, and the API key."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from conftest import API_KEY

from rnnserve import errors as server_errors
from rnnserve.client import (
    Client,
    InvalidInput,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    SeqConflict,
    SessionNotFound,
    SessionsNotSupported,
    Unauthorized,
)
from rnnserve.client import errors as client_errors
from rnnserve.client.wire import Call

SIGNAL = np.sin(np.arange(12, dtype=np.float32) / 2).reshape(1, 12, 1)


@pytest.fixture(params=[True, False], ids=["binary", "json"])
def client(request: pytest.FixtureRequest, server: ServerThread) -> Client:
    with Client(server.url, binary=request.param) as http:
        yield http


def raw_predict(server: ServerThread, model: str, body: dict) -> dict:
    """The server's own JSON answer, without the client."""
    response = httpx.post(f"{server.url}/v1/models/{model}/predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_predict_gives_the_servers_numbers(client: Client, server: ServerThread) -> None:
    result = client.predict("forecaster", SIGNAL, return_state=True)
    expected = raw_predict(server, "forecaster", {"inputs": SIGNAL.tolist(), "return_state": True})
    assert result.output.dtype == np.float32 and result.output.shape == (1, 12, 1)
    np.testing.assert_array_equal(result.output, np.asarray(expected["outputs"], dtype=np.float32))
    assert result.states is not None and len(result.states) == 1
    np.testing.assert_array_equal(result.states[0], np.asarray(expected["states"][0], dtype=np.float32))
    assert list(result.outputs) == ["next_value"] and result.step is None


def test_predict_with_a_mask_and_an_initial_state(client: Client, server: ServerThread) -> None:
    mask = np.ones((1, 12), dtype=bool)
    mask[0, 5:8] = False
    h0 = np.full((1, 32), 0.1, dtype=np.float32)
    result = client.predict("forecaster", SIGNAL, mask=mask, initial_state=[h0])
    body = {"inputs": SIGNAL.tolist(), "mask": mask.tolist(), "initial_state": [h0.tolist()]}
    np.testing.assert_array_equal(result.output, np.asarray(raw_predict(server, "forecaster", body)["outputs"], "f4"))


def test_token_ids_go_as_int64_and_lists_are_taken(client: Client, server: ServerThread) -> None:
    ids = [[1, 5, 9, 2]]
    result = client.predict("chargru", ids)
    expected = raw_predict(server, "chargru", {"inputs": ids})["outputs"]
    np.testing.assert_array_equal(result.output, np.asarray(expected, dtype=np.float32))
    floats = client.predict("forecaster", [[[0.0], [1.0]]])  # a list of ints for a float32 input
    np.testing.assert_array_equal(floats.output, client.predict("forecaster", np.array([[[0.0], [1.0]]])).output)


def test_several_outputs_come_by_name(client: Client) -> None:
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    result = client.predict("lstm_state", x)
    assert list(result.outputs) == [t.name for t in client.model("lstm_state").outputs]
    assert [a.shape for a in result.outputs.values()] == [(2, 4, 3), (2, 3), (2, 3)]
    with pytest.raises(ValueError, match="3 outputs"):
        _ = result.output


def test_chunked_steps_equal_one_predict_and_seq_follows(client: Client) -> None:
    whole = client.predict("forecaster", SIGNAL, return_state=True)
    with client.create_session("forecaster") as session:
        assert session.seq == 0
        parts = [session.step(SIGNAL[:, i : i + 4]) for i in (0, 4, 8)]
        assert [p.step for p in parts] == [4, 8, 12] and session.seq == 12
        info = session.info()
    np.testing.assert_allclose(np.concatenate([p.output for p in parts], axis=1), whole.output, atol=1e-6)
    assert info.step == 12 and info.states is not None
    np.testing.assert_allclose(info.states[0], whole.states[0], atol=1e-6)  # type: ignore[index]


def test_reset_with_and_without_states(client: Client) -> None:
    with client.create_session("orbit", batch_size=2) as session:
        session.step(np.ones((2, 3, 2)))
        session.reset()
        assert session.seq == 0
        info = session.info()
        assert info.step == 0 and all(not s.any() for s in info.states or [])
        states = [np.full(s.shape, 0.5, dtype=np.float32) for s in info.states or []]
        session.reset(states)
        np.testing.assert_array_equal(session.info().states, states)  # type: ignore[arg-type]
        assert session.step(np.ones((2, 1, 2))).step == 1


def test_a_session_stepped_elsewhere_is_a_seq_conflict_with_the_step(client: Client, server: ServerThread) -> None:
    with client.create_session("forecaster") as session:
        session.step(SIGNAL[:, :2])
        other = client.session(session.id)  # another holder of the same session
        assert other.seq == 2
        other.step(SIGNAL[:, 2:5])
        with pytest.raises(SeqConflict) as conflict:
            session.step(SIGNAL[:, 2:3])
        assert conflict.value.status == 409 and conflict.value.step == 5
        assert conflict.value.type == server_errors.SeqConflict.type
        session.refresh()
        assert session.seq == 5 and session.step(SIGNAL[:, 5:6]).step == 6


def test_errors_are_typed_and_change_nothing(client: Client) -> None:
    with pytest.raises(ModelNotFound) as missing:
        client.predict("nope", SIGNAL)
    assert isinstance(missing.value, NotFound) and "nope" in missing.value.detail
    with client.create_session("forecaster") as session:
        with pytest.raises(InvalidInput, match="dimension 2 must be 1"):
            session.step(np.zeros((1, 2, 2), dtype=np.float32))
        with pytest.raises(InvalidInput):
            session.step(np.full((1, 2, 1), np.nan, dtype=np.float32))
        assert session.info().step == 0 and session.seq == 0
        with pytest.raises(PayloadTooLarge):
            session.step(np.zeros((1, 300_000, 1), dtype=np.float32))
    with pytest.raises(SessionNotFound):
        session.info()
    with pytest.raises(SessionNotFound):
        session.delete()
    with pytest.raises(SessionsNotSupported):
        client.create_session("bi")


def test_every_server_problem_type_has_its_exception() -> None:
    problems = [
        cls
        for cls in vars(server_errors).values()
        if isinstance(cls, type) and issubclass(cls, server_errors.RnnServeError) and cls.type != "about:blank"
    ]
    assert len(problems) >= 12
    for cls in problems:
        exc = client_errors.from_problem({"type": cls.type, "title": cls.title, "status": int(cls.status)})
        assert type(exc) is client_errors.BY_TYPE[cls.type], cls
        expected = client_errors.BY_STATUS[int(cls.status)]
        assert isinstance(exc, expected) or cls is server_errors.InvalidArgument, (cls, type(exc))
    unknown = client_errors.from_problem({"type": "about:blank", "status": 405, "title": "Method Not Allowed"})
    assert isinstance(unknown, client_errors.MethodNotAllowed)


def test_an_unknown_route_maps_by_status(server: ServerThread) -> None:
    with Client(server.url) as client, pytest.raises(NotFound) as exc:
        client.request(Call("GET", "/v1/nothing"))
    assert exc.value.type == "about:blank" and "no route" in exc.value.detail


def test_the_api_key_is_sent(keyed_server: ServerThread) -> None:
    with Client(keyed_server.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.predict("forecaster", SIGNAL)
    with Client(keyed_server.url, api_key=API_KEY) as client:
        assert client.predict("forecaster", SIGNAL).output.shape == (1, 12, 1)
        with client.create_session("forecaster") as session:
            assert session.step(SIGNAL).step == 12
            assert [r.step for r in session.stream([SIGNAL[:, :1], SIGNAL[:, 1:3]])] == [13, 15]
    with Client(keyed_server.url, api_key="wrong") as wrong, pytest.raises(Unauthorized):
        wrong.models()


def test_models_and_health(client: Client) -> None:
    names = {m.name for m in client.models()}
    assert {"forecaster", "chargru", "orbit", "lstm_state", "bi"} <= names
    info = client.model("orbit")
    assert info.inputs[0].shape == (None, None, 2) and info.sessions and len(info.states) == 3
    assert client.healthy() and client.ready()


def test_a_session_deleted_in_its_block_is_not_deleted_again(client: Client) -> None:
    with client.create_session("forecaster") as session:
        session.delete()
        assert session.deleted
    with pytest.raises(SessionNotFound):
        session.info()
