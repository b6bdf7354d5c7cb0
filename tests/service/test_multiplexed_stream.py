"""WS /v1/streams: many sessions on one stream, binary frames of records and their JSON form.

Like the /v1 stream's tests (order, seq, retries, bad input leaving the session unchanged), plus frames that mix
good and bad records, several models in one frame, results equal to HTTP steps, and one model call per model for
a frame's records under dynamic batching."""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import as_list, close, open_session, session, step
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

FEATURES = 3
FRAME = struct.Struct("<BBHI")
STEP = struct.Struct("<IIQI")
RESULT = struct.Struct("<IHHI")
HAS_SEQ, RETURN_STATE = 1, 2

Record = tuple[int, np.ndarray] | tuple[int, np.ndarray, int | None] | tuple[int, Any, int | None, int]


def frame(*records: Record, version: int = 1) -> bytes:
    """A steps frame: each record (index, input array, seq?, flags?)."""
    parts = [FRAME.pack(version, 1, 0, len(records))]
    for record in records:
        index, data = record[0], record[1]
        seq = record[2] if len(record) > 2 else None
        flags = (record[3] if len(record) > 3 else 0) | (HAS_SEQ if seq is not None else 0)
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        parts.append(STEP.pack(index, flags, seq or 0, len(raw)) + raw)
    return b"".join(parts)


def results(reply: bytes | str) -> list[tuple[int, int, Any, bytes]]:
    """A results frame as (index, status, step or problem, float32 bytes)."""
    assert isinstance(reply, bytes), reply
    version, kind, _, count = FRAME.unpack_from(reply)
    assert (version, kind) == (1, 2)
    out = []
    offset = FRAME.size
    for _ in range(count):
        index, status, _, length = RESULT.unpack_from(reply, offset)
        offset += RESULT.size
        body = reply[offset : offset + length]
        offset += length
        if status == 200:
            out.append((index, status, struct.unpack_from("<Q", body)[0], body[8:]))
        else:
            out.append((index, status, json.loads(body), b""))
    assert offset == len(reply)
    return out


def floats(data: bytes, *shape: int) -> np.ndarray:
    return np.frombuffer(data, "<f4").reshape(shape)


def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps(message))
    reply = ws.recv(timeout=30)
    assert isinstance(reply, str), reply
    return json.loads(reply)  # type: ignore[no-any-return]


def open_on(ws: ClientConnection, *models: str) -> list[dict[str, Any]]:
    opened = ask(ws, {"open": [{"model": model} for model in models]})["opened"]
    assert all("index" in entry for entry in opened), opened
    return opened  # type: ignore[no-any-return]


def test_a_frame_steps_sessions_of_several_models_as_http_steps_do(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    models = ["gru", "lstm", "gru", "simple", "stacked"]
    units = {"gru": 5, "lstm": 4, "simple": 4, "stacked": 2}
    twins = [open_session(client, model)["session_id"] for model in models]
    chunks = [rng.standard_normal((3, 1, 2 + i % 2, FEATURES)).astype(np.float32) for i in range(len(models))]
    with connect(f"{server.ws_url}/v1/streams") as ws:
        opened = open_on(ws, *models)
        assert [entry["index"] for entry in opened] == list(range(len(models)))
        assert [entry["model"] for entry in opened] == models and all(e["step"] == 0 for e in opened)
        for t in range(3):
            ws.send(frame(*((i, chunks[i][t]) for i in range(len(models)))))
            got = results(ws.recv(timeout=30))
            for i, model in enumerate(models):
                index, status, at, data = got[i]
                expected = step(client, twins[i], chunks[i][t])
                timesteps = chunks[i][t].shape[1]
                assert (index, status, at) == (i, 200, expected["step"])
                assert close(floats(data, 1, timesteps, units[model]), expected["outputs"])
    for i, entry in enumerate(opened):
        assert session(client, entry["session_id"])["step"] == 3 * (2 + i % 2)


def test_a_frame_mixing_good_and_bad_records_serves_the_good_ones(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((1, 1, FEATURES)).astype(np.float32)
    with connect(f"{server.ws_url}/v1/streams") as ws:
        opened = open_on(ws, "gru", "lstm", "simple")
        ids = [entry["session_id"] for entry in opened]
        ws.send(frame((0, x), (1, x)))
        results(ws.recv(timeout=30))
        before = [session(client, sid) for sid in ids]
        ws.send(
            frame(
                (0, x, 1),  # good, seq matches
                (1, x, 7),  # stale seq: 409
                (9, x),  # no session at index 9: 404
                (2, b"\x00" * 5),  # not a whole timestep: 400
                (2, x),  # good
            )
        )
        got = results(ws.recv(timeout=30))
        assert [(index, status) for index, status, _, _ in got] == [(0, 200), (1, 409), (9, 404), (2, 400), (2, 200)]
        assert got[0][2] == 2 and got[4][2] == 1
        assert got[1][2]["step"] == 1 and "seq 7" in got[1][2]["detail"]
        assert "index 9" in got[2][2]["detail"] and "5 bytes" in got[3][2]["detail"]
        for problem in (got[1][2], got[2][2], got[3][2]):
            assert {"type", "title", "status", "detail"} <= set(problem)
        after = [session(client, sid) for sid in ids]
        assert after[1]["states"] == before[1]["states"] and after[1]["step"] == 1  # unchanged
        assert after[0]["step"] == 2 and after[2]["step"] == 1
        ws.send(frame((1, x, 1)))  # the stream goes on
        assert results(ws.recv(timeout=30))[0][:3] == (1, 200, 2)


def test_records_of_one_session_apply_in_order(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    xs = rng.standard_normal((4, 1, 1, FEATURES)).astype(np.float32)
    twin = open_session(client, "gru")["session_id"]
    expected = [step(client, twin, x)["outputs"] for x in xs]
    with connect(f"{server.ws_url}/v1/streams") as ws:
        open_on(ws, "gru")
        ws.send(frame((0, xs[0], 0), (0, xs[1], 1), (0, xs[2])))
        first = results(ws.recv(timeout=30))
        ws.send(frame((0, xs[3], 3)))
        second = results(ws.recv(timeout=30))
    got = first + second
    assert [at for _, _, at, _ in got] == [1, 2, 3, 4]
    for (_, _, _, data), want in zip(got, expected, strict=True):
        assert close(floats(data, 1, 1, 5), want)


def test_a_retried_record_is_answered_from_the_cache(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((1, 2, FEATURES)).astype(np.float32)
    with connect(f"{server.ws_url}/v1/streams") as ws:
        (opened,) = open_on(ws, "simple")
        ws.send(frame((0, x, 0, RETURN_STATE)))
        first = results(ws.recv(timeout=30))
        ws.send(frame((0, x, 0, RETURN_STATE)))  # the reply was lost: the same record again
        again = results(ws.recv(timeout=30))
        ws.send(frame((0, x * 2, 0)))  # same seq, other inputs: a conflict, not a replay
        conflict = results(ws.recv(timeout=30))
    assert again == first and first[0][2] == 2
    assert len(first[0][3]) == (1 * 2 * 4 + 1 * 4) * 4  # outputs, then the state
    assert conflict[0][1] == 409
    assert session(client, opened["session_id"])["step"] == 2


def test_sessions_opened_through_rest_attach_and_close_on_the_stream(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((2, 1, FEATURES)).astype(np.float32)
    sid = open_session(client, "lstm", batch_size=2)["session_id"]
    with connect(f"{server.ws_url}/v1/streams") as ws:
        attached = ask(ws, {"attach": [sid, "nope", 3]})["attached"]
        assert attached[0]["index"] == 0 and attached[0]["session_id"] == sid and attached[0]["batch_size"] == 2
        assert attached[1]["problem"]["status"] == 404 and attached[2]["problem"]["status"] == 400
        ws.send(frame((0, x)))
        (got,) = results(ws.recv(timeout=30))
        assert got[:3] == (0, 200, 1) and floats(got[3], 2, 1, 4).shape == (2, 1, 4)
        detached = ask(ws, {"detach": [0, 5]})["detached"]
        assert detached[0] == 0 and detached[1]["problem"]["status"] == 404
        ws.send(frame((0, x)))
        assert results(ws.recv(timeout=30))[0][1] == 404  # detached: the index is gone, the session lives
        assert session(client, sid)["step"] == 1
        index = ask(ws, {"attach": [sid]})["attached"][0]["index"]
        assert index == 1
        assert ask(ws, {"close": [index]})["closed"] == [{"index": 1}]
        assert ask(ws, {"close": [index]})["closed"][0]["problem"]["status"] == 404
    assert client.get(f"/v1/sessions/{sid}").status_code == 404


def test_the_json_form_names_sessions_by_index_or_id(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((1, 1, FEATURES)).astype(np.float32)
    rest = open_session(client, "gru")["session_id"]
    twin = open_session(client, "gru")["session_id"]
    with connect(f"{server.ws_url}/v1/streams") as ws:
        open_on(ws, "simple")
        reply = ask(
            ws,
            {
                "steps": [
                    {"session": 0, "inputs": as_list(x), "seq": 0},
                    {"session": rest, "inputs": as_list(x), "return_state": True},
                    {"session": 4, "inputs": as_list(x)},
                    {"session": 0, "inputs": [[[1.0]]]},
                    {"session": "missing", "inputs": as_list(x)},
                ]
            },
        )["results"]
        retry = ask(ws, {"steps": [{"session": 0, "inputs": as_list(x), "seq": 0}]})["results"]
    assert reply[0]["session"] == 0 and reply[0]["step"] == 1 and np.shape(reply[0]["outputs"]) == (1, 1, 4)
    assert reply[1]["session"] == rest and reply[1]["step"] == 1 and np.shape(reply[1]["states"]) == (1, 1, 5)
    assert close(reply[1]["outputs"], step(client, twin, x)["outputs"])
    assert [r["problem"]["status"] for r in reply[2:]] == [404, 400, 404]
    assert retry == [reply[0]]


def test_a_bad_message_or_frame_gets_a_problem_and_the_stream_goes_on(server: ServerThread) -> None:
    with connect(f"{server.ws_url}/v1/streams") as ws:
        for bad in ("not json", json.dumps({"what": 1}), json.dumps({"steps": 3})):
            ws.send(bad)
            assert json.loads(ws.recv(timeout=30))["status"] == 400
        for bad_frame in (b"\x01", frame(version=2), frame((0, b"\x00" * 12))[:-3], FRAME.pack(1, 2, 0, 0)):
            ws.send(bad_frame)
            problem = json.loads(ws.recv(timeout=30))
            assert problem["status"] == 400 and problem["detail"]
        opened = open_on(ws, "simple")
        assert opened[0]["index"] == 0
        opened = ask(ws, {"open": [{"model": "no-such-model"}, {"model": "simple", "batch_size": 0}]})["opened"]
        assert [entry["problem"]["status"] for entry in opened] == [404, 400]


def test_binary_records_take_token_ids_and_time_major_layouts(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    ids = np.array([[3, 1, 4]], dtype=np.int64)
    xt = rng.standard_normal((2, 1, FEATURES)).astype(np.float32)  # (T, B, F): the model's own layout
    tokens_twin = open_session(client, "tokens")["session_id"]
    major_twin = open_session(client, "time_major")["session_id"]
    with connect(f"{server.ws_url}/v1/streams") as ws:
        open_on(ws, "tokens", "time_major")
        ws.send(frame((0, ids), (1, xt)))
        got = results(ws.recv(timeout=30))
    assert [(g[1], g[2]) for g in got] == [(200, 3), (200, 2)]
    want_tokens = step(client, tokens_twin, ids)["outputs"]
    want_major = step(client, major_twin, xt)["outputs"]
    assert close(floats(got[0][3], *np.shape(want_tokens)), want_tokens)
    assert close(floats(got[1][3], *np.shape(want_major)), want_major)


_CALLS = re.compile(r'^rnnserve_model_calls_total\{model="(\w+)"\} (\S+)$', re.M)


def model_calls(client: httpx.Client) -> dict[str, float]:
    return {model: float(value) for model, value in _CALLS.findall(client.get("/metrics").text)}


def test_a_frame_runs_one_model_call_per_model(
    client: httpx.Client, server: ServerThread, executor: str, rng: np.random.Generator
) -> None:
    if executor != "dynamic":
        pytest.skip("merging concurrent steps is the dynamic batcher's")
    x = rng.standard_normal((1, 1, FEATURES)).astype(np.float32)
    with connect(f"{server.ws_url}/v1/streams") as ws:
        open_on(ws, *(["simple"] * 24 + ["lstm"] * 8))
        before = model_calls(client)
        ws.send(frame(*((i, x) for i in range(32))))
        assert all(status == 200 for _, status, _, _ in results(ws.recv(timeout=30)))
        after = model_calls(client)
    assert after["simple"] - before.get("simple", 0) == 1
    assert after["lstm"] - before.get("lstm", 0) == 1


def test_the_stream_needs_the_api_key(make_server: Callable[..., ServerThread]) -> None:
    keyed = make_server(api_key="k")
    with pytest.raises(InvalidStatus):  # refused before the handshake completes
        connect(f"{keyed.ws_url}/v1/streams")
    with connect(f"{keyed.ws_url}/v1/streams", additional_headers={"Authorization": "Bearer k"}) as ws:
        assert open_on(ws, "simple")[0]["index"] == 0


def test_a_bad_value_fails_only_its_own_record_of_a_batched_group(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((4, 1, 1, FEATURES)).astype(np.float32)
    bad = x[2].copy()
    bad[0, 0, 1] = np.nan
    twins = [open_session(client, "gru")["session_id"] for _ in range(4)]
    with connect(f"{server.ws_url}/v1/streams") as ws:
        opened = open_on(ws, "gru", "gru", "gru", "gru")
        ws.send(frame((0, x[0]), (1, x[1]), (2, bad), (3, x[3]), (0, x[2])))  # index 0 twice: in order, after
        got = results(ws.recv(timeout=30))
    assert [(index, status) for index, status, _, _ in got] == [(0, 200), (1, 200), (2, 400), (3, 200), (0, 200)]
    assert "nan" in got[2][2]["detail"].lower() or "finite" in got[2][2]["detail"].lower()
    assert session(client, opened[2]["session_id"])["step"] == 0
    assert got[0][2] == 1 and got[4][2] == 2
    for i in (1, 3):
        assert close(floats(got[i][3], 1, 1, 5), step(client, twins[i], x[i])["outputs"])
    step(client, twins[0], x[0])
    assert close(floats(got[4][3], 1, 1, 5), step(client, twins[0], x[2])["outputs"])


def test_the_stream_serves_sessions_of_either_store(
    any_client: httpx.Client, any_server: ServerThread, rng: np.random.Generator
) -> None:
    xs = rng.standard_normal((3, 8, 1, 1, FEATURES)).astype(np.float32)
    twins = [open_session(any_client, "lstm")["session_id"] for _ in range(8)]
    with connect(f"{any_server.ws_url}/v1/streams") as ws:
        opened = open_on(ws, *(["lstm"] * 8))
        for t in range(3):
            ws.send(frame(*((i, xs[t, i], t) for i in range(8))))
            got = results(ws.recv(timeout=30))
            for i in range(8):
                assert got[i][1:3] == (200, t + 1)
                assert close(floats(got[i][3], 1, 1, 4), step(any_client, twins[i], xs[t, i])["outputs"])
        ws.send(frame((0, xs[2, 0], 2)))  # a retry of index 0's last step: its cached reply
        assert results(ws.recv(timeout=30)) == [got[0]]
    assert all(session(any_client, entry["session_id"])["step"] == 3 for entry in opened)


def test_another_tenants_session_is_unknown_on_the_stream(
    make_server: Callable[..., ServerThread], tmp_path: Path, rng: np.random.Generator
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("alice:alice-key\nbob:bob-key\n")
    server = make_server(api_keys_file=keys)
    alice, bob = {"Authorization": "Bearer alice-key"}, {"Authorization": "Bearer bob-key"}
    x = rng.standard_normal((1, 1, FEATURES)).astype(np.float32)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        theirs = client.post("/v1/sessions", json={"model": "gru"}, headers=alice).json()["session_id"]
        with connect(f"{server.ws_url}/v1/streams", additional_headers=bob) as ws:
            assert ask(ws, {"attach": [theirs]})["attached"][0]["problem"]["status"] == 404
            (own,) = open_on(ws, "gru")
            reply = ask(
                ws, {"steps": [{"session": theirs, "inputs": as_list(x)}, {"session": 0, "inputs": as_list(x)}]}
            )
            assert reply["results"][0]["problem"]["status"] == 404 and reply["results"][1]["step"] == 1
        with connect(f"{server.ws_url}/v1/streams", additional_headers=alice) as ws:
            (mine,) = ask(ws, {"attach": [theirs]})["attached"]
            ws.send(frame((0, x)))
            assert results(ws.recv(timeout=30))[0][1:3] == (200, 1)
            assert ask(ws, {"attach": [own["session_id"]]})["attached"][0]["problem"]["status"] == 404
        assert client.get(f"/v1/sessions/{own['session_id']}", headers=bob).json()["step"] == 1


def test_an_expired_session_fails_its_record_and_each_step_renews_the_ttl(
    server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((1, 1, FEATURES)).astype(np.float32)
    with connect(f"{server.ws_url}/v1/streams") as ws:
        ask(ws, {"open": [{"model": "simple", "ttl_s": 1.0}, {"model": "simple", "ttl_s": 1.0}]})
        for _ in range(3):  # index 0 is stepped every 0.4 s: it lives on; index 1 is left idle
            time.sleep(0.4)
            ws.send(frame((0, x)))
            assert results(ws.recv(timeout=30))[0][1] == 200
        ws.send(frame((0, x), (1, x)))
        got = results(ws.recv(timeout=30))
    assert [status for _, status, _, _ in got] == [200, 404]
    assert got[1][2]["type"].endswith("session-not-found")


def test_a_reset_record_resets_layers_as_the_http_reset_does_in_the_streams_order(
    any_client: httpx.Client, any_server: ServerThread, rng: np.random.Generator
) -> None:
    xs = rng.standard_normal((5, 1, 2, FEATURES)).astype(np.float32)
    h, c = rng.standard_normal((1, 4)), rng.standard_normal((1, 4))
    twin = open_session(any_client, "stacked")["session_id"]
    resets: list[dict[str, Any]] = [{"layers": ["gru"]}, {"layers": ["lstm"], "states": [as_list(h), as_list(c)]}]
    with connect(f"{any_server.ws_url}/v1/streams") as ws:
        (opened,) = open_on(ws, "stacked")
        sid = opened["session_id"]
        ws.send(frame((0, xs[0])))
        ws.send(frame((0, xs[1])))  # sent without waiting: the reset must not overtake it
        ws.send(json.dumps({"reset": [{"session": 0, **resets[0]}]}))
        ws.send(frame((0, xs[2])))
        ws.send(json.dumps({"reset": [{"session": sid, **resets[1]}]}))  # by id
        ws.send(frame((0, xs[3], 0)))
        replies = [ws.recv(timeout=30) for _ in range(6)]
    first, second, reset, third, reset_by_id, fourth = replies
    assert isinstance(reset, str) and isinstance(reset_by_id, str)
    assert json.loads(reset) == {"reset": [{"session": 0, "step": 0, "session_id": sid, "layers": ["gru"]}]}
    assert json.loads(reset_by_id) == {"reset": [{"session": sid, "step": 0, "session_id": sid, "layers": ["lstm"]}]}
    want = [step(any_client, twin, xs[0]), step(any_client, twin, xs[1])]
    assert any_client.post(f"/v1/sessions/{twin}/reset", json=resets[0]).json()["step"] == 0
    want.append(step(any_client, twin, xs[2]))
    any_client.post(f"/v1/sessions/{twin}/reset", json=resets[1]).raise_for_status()
    want.append(step(any_client, twin, xs[3], seq=0))
    got = [results(reply)[0] for reply in (first, second, third, fourth)]
    assert [g[1:3] for g in got] == [(200, 2), (200, 4), (200, 2), (200, 2)]
    for (_, _, at, data), expected in zip(got, want, strict=True):
        assert at == expected["step"] and close(floats(data, 1, 2, 2), expected["outputs"])
    mine, theirs = session(any_client, sid), session(any_client, twin)
    assert mine["step"] == theirs["step"] == 2
    assert all(close(a, b) for a, b in zip(mine["states"], theirs["states"], strict=True))


def test_a_reset_message_mixing_good_and_bad_records_serves_the_good_ones(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((1, 3, FEATURES)).astype(np.float32)
    rest = open_session(client, "stacked")["session_id"]
    step(client, rest, x)
    with connect(f"{server.ws_url}/v1/streams") as ws:
        opened = open_on(ws, "stacked", "gru")
        ids = [entry["session_id"] for entry in opened]
        ws.send(frame((0, x), (1, x)))
        results(ws.recv(timeout=30))
        before = [session(client, sid) for sid in ids]
        reply = ask(
            ws,
            {
                "reset": [
                    {"session": 9},  # never bound: 404
                    {"session": 0, "layers": ["gru", "dense"]},  # dense holds no state: 400
                    {"session": 0, "layers": ["lstm"], "states": [[[1.0]]]},  # one state of the wrong shape: 400
                    {"session": 1, "layers": "gru"},  # not a list: 400
                    "nope",  # not an object: 400
                    {"layers": ["gru"]},  # no session: 400
                    {"session": "missing"},  # no such id: 404
                    {"session": 0, "layers": ["gru"]},  # good
                    {"session": rest},  # good, every layer, by id
                ]
            },
        )["reset"]
        assert [entry["session"] for entry in reply] == [9, 0, 0, 1, None, None, "missing", 0, rest]
        assert [entry.get("problem", {}).get("status") for entry in reply] == [
            404,
            400,
            400,
            400,
            400,
            400,
            404,
            None,
            None,
        ]
        assert "'dense'" in reply[1]["problem"]["detail"] and "index 9" in reply[0]["problem"]["detail"]
        assert reply[7] == {"session": 0, "step": 0, "session_id": ids[0], "layers": ["gru"]}
        assert reply[8] == {"session": rest, "step": 0, "session_id": rest}
        after = [session(client, sid) for sid in ids]
        assert (after[1]["step"], after[1]["states"]) == (3, before[1]["states"])  # its bad record changed nothing
        assert after[0]["step"] == 0 and all(
            close(a, b) for a, b in zip(after[0]["states"][:2], before[0]["states"][:2], strict=True)
        )
        assert not np.any(after[0]["states"][2])  # gru h zeroed, lstm's kept
        assert session(client, rest)["step"] == 0 and not np.any(session(client, rest)["states"][0])
        assert ask(ws, {"reset": 3})["status"] == 400
        refused = ask(ws, {"reset": [{"session": 0}], "open": [{"model": "gru"}]})  # one kind of message each
        assert refused["status"] == 400 and '"reset"' in refused["detail"]
        assert session(client, ids[0])["states"] == after[0]["states"]  # the refused messages reset nothing
        ws.send(frame((1, x, 3)))  # the stream goes on
        assert results(ws.recv(timeout=30))[0][1:3] == (200, 6)


def test_a_frames_steps_are_timed_stage_by_stage(
    client: httpx.Client, server: ServerThread, rng: np.random.Generator
) -> None:
    """The batched step times the store's read and commit and the encoding of each step, as `step` does: each
    step of a frame is one observation of each stage (its batch's mean), under its model."""
    from test_stage_metrics import STAGES, stage_counts

    x = rng.standard_normal((1, 1, FEATURES)).astype(np.float32)
    with connect(f"{server.ws_url}/v1/streams") as ws:
        open_on(ws, *(["simple"] * 6 + ["lstm"] * 2))
        before = {model: stage_counts(client, model) for model in ("simple", "lstm")}
        ws.send(frame(*((i, x) for i in range(8))))
        assert all(status == 200 for _, status, _, _ in results(ws.recv(timeout=30)))
        after = {model: stage_counts(client, model) for model in ("simple", "lstm")}
    for model, steps in (("simple", 6), ("lstm", 2)):
        for stage in STAGES:
            if stage == "queue" and after[model].get(stage, 0) == before[model].get(stage, 0):
                continue  # direct execution has no batcher's queue
            assert after[model].get(stage, 0) - before[model].get(stage, 0) >= 1, (model, stage)
        for stage in ("store_read", "store_commit", "encode"):
            assert after[model][stage] - before[model].get(stage, 0) == steps, (model, stage, before, after)
