"""Issue 12, item 3: tenants from an API keys file. Every session and /v2 sequence belongs to the tenant that created
it; another tenant gets 404 on every route and changes nothing; /v2 sequence ids are per tenant; quotas answer 429
with Retry-After. Each test runs on the memory store and on Redis."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_harness import ServerThread
from prometheus_client.parser import text_string_to_metric_families
from service_client import assert_problem
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rnnserve.tenants import Quota, TenantsFileError, parse_tenants

NOT_FOUND = "https://rnnserve.dev/problems/session-not-found"
QUOTA = "https://rnnserve.dev/problems/quota-exceeded"
ALICE, BOB, CAROL = "alice-key-1", "bob-key-2", "carol-key-3"
X = [[[0.1, 0.2, 0.3]]]


def keys_file(tmp_path: Path, *extra: str) -> Path:
    path = tmp_path / "keys"
    carol_digest = hashlib.sha256(CAROL.encode()).hexdigest()
    lines = ["# tenants", f"alice:{ALICE}", f"bob:{BOB}  # bob's", f"carol:sha256:{carol_digest}", *extra]
    path.write_text("\n".join(lines) + "\n")
    return path


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def tenant_server(
    make_server: Callable[..., ServerThread], store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerThread]:
    overrides: dict[str, Any] = {"api_keys_file": keys_file(tmp_path, "quota * sessions=3", "quota carol sessions=1")}
    if store_kind == "redis":
        overrides["store_url"] = request.getfixturevalue("redis_url")
    yield make_server(**overrides)


def snapshot(client: httpx.Client, sid: str, key: str) -> dict[str, Any]:
    body = client.get(f"/v1/sessions/{sid}", headers=auth(key))
    assert body.status_code == 200, body.text
    info: dict[str, Any] = body.json()
    info.pop("expires_at", None)
    return info


def test_another_tenant_gets_404_on_every_route_and_changes_nothing(tenant_server: ServerThread) -> None:
    with httpx.Client(base_url=tenant_server.url, timeout=30) as client:
        created = client.post("/v1/sessions", json={"model": "gru"}, headers=auth(ALICE))
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        stepped = client.post(f"/v1/sessions/{sid}/step", json={"inputs": X}, headers=auth(ALICE))
        assert stepped.status_code == 200
        before = snapshot(client, sid, ALICE)

        bob = auth(BOB)
        for response in (
            client.get(f"/v1/sessions/{sid}", headers=bob),
            client.post(f"/v1/sessions/{sid}/step", json={"inputs": X}, headers=bob),
            client.post(f"/v1/sessions/{sid}/step", json={"inputs": X, "seq": 1}, headers=bob),
            client.post(f"/v1/sessions/{sid}/reset", json={}, headers=bob),
            client.delete(f"/v1/sessions/{sid}", headers=bob),
        ):
            assert assert_problem(response, 404)["type"] == NOT_FOUND
        with connect(f"{tenant_server.ws_url}/v1/sessions/{sid}/stream", additional_headers=bob) as ws:
            assert json.loads(ws.recv(timeout=30))["status"] == 404
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=30)
            assert ws.close_code == 4404
        listed = client.get("/v1/sessions", headers=bob)
        assert listed.status_code == 200, listed.text
        assert sid not in [s["session_id"] for s in listed.json()["sessions"]]
        assert sid in [s["session_id"] for s in client.get("/v1/sessions", headers=auth(ALICE)).json()["sessions"]]

        assert snapshot(client, sid, ALICE) == before
        # the owner still has it whole
        assert client.post(f"/v1/sessions/{sid}/step", json={"inputs": X}, headers=auth(ALICE)).json()["step"] == 2
        assert client.delete(f"/v1/sessions/{sid}", headers=auth(ALICE)).status_code == 204


def test_two_tenants_reuse_one_v2_sequence_id(tenant_server: ServerThread) -> None:
    def infer(key: str, value: float, **parameters: Any) -> httpx.Response:
        tensor = {"name": "x", "shape": [1, 1, 3], "datatype": "FP32", "data": [value, value, value]}
        return client.post(
            "/v2/models/gru/infer", json={"inputs": [tensor], "parameters": {"sequence_id": 1, **parameters}},
            headers=auth(key),
        )  # fmt: skip

    with httpx.Client(base_url=tenant_server.url, timeout=30) as client:
        first_a = infer(ALICE, 0.5, sequence_start=True)
        assert first_a.status_code == 200, first_a.text
        # bob's sequence 1 is not alice's: continuing it without a start is refused, and alice's is untouched
        refused = infer(BOB, 0.5)
        assert refused.status_code == 400, refused.text
        assert "not active" in refused.json()["error"]
        first_b = infer(BOB, -0.9, sequence_start=True)
        assert first_b.status_code == 200
        second_a = infer(ALICE, 0.5)
        # alice's second step continues from alice's state, as a lone sequence does
        alone = infer(CAROL, 0.5, sequence_start=True)
        assert alone.status_code == 200
        again = infer(CAROL, 0.5)
        assert second_a.json()["outputs"] == again.json()["outputs"]
        for key in (ALICE, BOB, CAROL):
            assert infer(key, 0.0, sequence_end=True).status_code == 200


def test_quotas_answer_429_with_retry_after(tenant_server: ServerThread) -> None:
    with httpx.Client(base_url=tenant_server.url, timeout=30) as client:
        carol = auth(CAROL)  # carol's quota: one session (her key is given as its SHA-256)
        sid = client.post("/v1/sessions", json={"model": "gru"}, headers=carol).json()["session_id"]
        refused = client.post("/v1/sessions", json={"model": "gru"}, headers=carol)
        body = assert_problem(refused, 429, contains="quota")
        assert body["type"] == QUOTA
        assert (body["limit"], body["needed"]) == (1, 2)
        assert refused.headers["retry-after"] == "5"
        # other tenants have their own quota (the default: three sessions)
        others = [client.post("/v1/sessions", json={"model": "gru"}, headers=auth(BOB)) for _ in range(3)]
        assert [r.status_code for r in others] == [201, 201, 201]
        assert client.post("/v1/sessions", json={"model": "gru"}, headers=auth(BOB)).status_code == 429
        assert client.delete(f"/v1/sessions/{sid}", headers=carol).status_code == 204
        again = client.post("/v1/sessions", json={"model": "gru"}, headers=carol)
        assert again.status_code == 201
        for key, created in ((CAROL, again), *((BOB, r) for r in others)):  # the Redis store outlives the server
            client.delete(f"/v1/sessions/{created.json()['session_id']}", headers=auth(key))


def test_unknown_and_missing_keys_are_401(tenant_server: ServerThread) -> None:
    with httpx.Client(base_url=tenant_server.url, timeout=30) as client:
        assert_problem(client.get("/v1/models"), 401)
        assert_problem(client.get("/v1/models", headers=auth("sha256:" + "0" * 64)), 401)
        assert_problem(client.get("/v1/models", headers=auth(hashlib.sha256(CAROL.encode()).hexdigest())), 401)
        assert client.get("/v1/models", headers=auth(CAROL)).status_code == 200


def tenant_counts(text: str) -> dict[tuple[str, str, str, str], float]:
    """`rnnserve_tenant_requests_total` of a /metrics text: (tenant, route, method, status class) -> count."""
    return {
        (s.labels["tenant"], s.labels["route"], s.labels["method"], s.labels["status_class"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "rnnserve_tenant_requests"
        for s in family.samples
        if s.name == "rnnserve_tenant_requests_total"
    }


def test_metrics_count_each_tenants_requests(tenant_server: ServerThread) -> None:
    step = "/v1/sessions/{session_id}/step"
    with httpx.Client(base_url=tenant_server.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/v1/models", headers=auth(ALICE)).status_code == 200
        assert client.get("/v1/models", headers=auth(BOB)).status_code == 200
        sid = client.post("/v1/sessions", json={"model": "gru"}, headers=auth(BOB)).json()["session_id"]
        for _ in range(2):  # a hot route, served before FastAPI's routing
            assert client.post(f"/v1/sessions/{sid}/step", json={"inputs": X}, headers=auth(BOB)).status_code == 200
        assert client.post(f"/v1/sessions/{sid}/step", json={"inputs": X}, headers=auth(ALICE)).status_code == 404
        assert client.get("/v1/models").status_code == 401  # no key: no tenant
        with connect(f"{tenant_server.ws_url}/v1/sessions/{sid}/stream", additional_headers=auth(BOB)) as ws:
            ws.send(json.dumps({"inputs": X}))
            assert json.loads(ws.recv(timeout=30))["step"] == 3
        counts = tenant_counts(client.get("/metrics").text)
        assert client.delete(f"/v1/sessions/{sid}", headers=auth(BOB)).status_code == 204
    assert counts[("alice", "/v1/models", "GET", "2xx")] == 3
    assert counts[("bob", "/v1/models", "GET", "2xx")] == 1
    assert counts[("bob", "/v1/sessions", "POST", "2xx")] == 1
    assert counts[("bob", step, "POST", "2xx")] == 2
    assert counts[("alice", step, "POST", "4xx")] == 1
    assert counts[("-", "/v1/models", "GET", "4xx")] == 1
    assert counts[("bob", "/v1/sessions/{session_id}/stream", "WS", "2xx")] == 1
    assert ("alice", step, "POST", "2xx") not in counts
    assert {tenant for tenant, *_ in counts} <= {"alice", "bob", "carol", "-"}  # bounded: the keys file's tenants


def test_a_server_without_keys_counts_no_tenants(client: httpx.Client) -> None:
    assert client.get("/v1/models").status_code == 200
    assert tenant_counts(client.get("/metrics").text) == {}


def test_the_keys_file_syntax() -> None:
    tenants = parse_tenants(
        ["a:k1", "a:k2", "b:sha256:" + "ab" * 32, "quota * sessions=10 state_bytes=1MiB", "quota b state_bytes=2048"],
        Quota(100, 10**9),
    )
    assert tenants.names == {"a", "b"}
    assert tenants.quota("a") == Quota(10, 2**20)
    assert tenants.quota("b") == Quota(10, 2048)
    for bad in (["no-colon"], ["a:"], ["a b:key"], ["a:sha256:xyz"], ["quota a files=3"], ["a:k", "b:k"], []):
        with pytest.raises(TenantsFileError):
            parse_tenants(bad, Quota())


def test_the_redis_record_keeps_its_owner_and_decodes_strictly() -> None:
    import numpy as np

    from rnnserve.sessions.codec import StateCodecError, decode_listing, decode_record, encode_record

    fields = {
        "version": 3, "tag": b"12345678", "ttl_ms": 1000, "step": 7, "prev_step": 5, "created_at": 1.5,
        "batch_size": 2, "model": "gru", "digest": b"d", "response": b"r", "states": [np.zeros((2, 5), np.float32)],
    }  # fmt: skip
    owned = decode_record(encode_record(**fields, owner="alice"))
    assert (owned.model, owned.owner, owned.step) == ("gru", "alice", 7)
    assert decode_listing(encode_record(**fields, owner="alice"))[3:] == ("gru", "alice")
    assert decode_record(encode_record(**fields)).owner is None
    forged = encode_record(**{**fields, "model": "x"}).replace(b"x", b"\0", 1)  # an empty model, an empty owner
    with pytest.raises(StateCodecError):
        decode_record(forged)
    with pytest.raises(StateCodecError):
        encode_record(**fields, owner="")
