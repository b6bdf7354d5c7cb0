"""Issue 12, item 5: optional CORS, off by default. Off, a server sends no Access-Control-* header and answers OPTIONS
as before (405). On, the edge answers preflights for every route (hot or FastAPI's) without the API key, and adds
Access-Control-Allow-Origin to every response to an allowed origin: successes, problem+json errors, 401s; a
disallowed origin gets no CORS header, and its preflight a 400 `cors-refused`. Through a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from service_client import assert_problem

from rnnserve.api.cors import with_headers

KEY = "cors-test-key"
APP = "https://app.example.com"
EVIL = "https://evil.example.net"
STEP = "/v1/sessions/{sid}/step"
X = [[[0.1, 0.2, 0.3]]]
REFUSED = "https://rnnserve.dev/problems/cors-refused"


def preflight(origin: str, method: str = "POST", headers: str | None = "authorization, content-type") -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return asked


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def auth(origin: str | None = APP) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {KEY}"}
    if origin is not None:
        headers["Origin"] = origin
    return headers


@pytest.fixture
def cors_server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(api_key=KEY, cors_allow_origins=f"{APP},https://*.example.org", cors_max_age_s=120)


@pytest.fixture
def cors_client(cors_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cors_server.url, timeout=30) as client:
        yield client


def new_session(client: httpx.Client) -> str:
    created = client.post("/v1/sessions", json={"model": "gru"}, headers=auth())
    assert created.status_code == 201, created.text
    return str(created.json()["session_id"])


def session_step(client: httpx.Client, sid: str) -> int:
    return int(client.get(f"/v1/sessions/{sid}", headers=auth()).json()["step"])


# ---- off by default -------------------------------------------------------------------------------------------------


def test_off_by_default_no_cors_header_and_options_is_405(client: httpx.Client) -> None:
    sid = client.post("/v1/sessions", json={"model": "gru"}).json()["session_id"]
    for path in (STEP.format(sid=sid), "/v1/sessions", "/v2/models/gru/infer"):
        answer = client.options(path, headers=preflight(APP))
        assert answer.status_code == 405 and "OPTIONS is not allowed" in answer.text
        assert not cors_headers(answer) and "vary" not in answer.headers
    stepped = client.post(STEP.format(sid=sid), json={"inputs": X}, headers={"Origin": APP})
    assert stepped.status_code == 200
    assert not cors_headers(stepped) and "vary" not in stepped.headers
    missing = client.get("/v1/sessions/nope", headers={"Origin": APP})
    assert_problem(missing, 404)
    assert not cors_headers(missing)
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204


# ---- preflights -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [STEP, "/v1/sessions", "/v1/models/gru/predict", "/v2/models/gru/infer", "/metrics"])
def test_a_preflight_from_an_allowed_origin_is_204_without_a_key(cors_client: httpx.Client, path: str) -> None:
    sid = new_session(cors_client)
    answer = cors_client.options(
        path.format(sid=sid), headers=preflight(APP, headers="authorization,content-type,x-seq")
    )
    assert answer.status_code == 204, answer.text
    assert answer.content == b""
    assert cors_headers(answer) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST, DELETE",
        "access-control-allow-headers": (
            "Authorization, Content-Type, Content-Encoding, X-Shape, X-Seq, X-Return-State, X-Time-Major, "
            "Inference-Header-Content-Length"
        ),
        "access-control-max-age": "120",
    }
    assert answer.headers["vary"] == "Origin"
    assert session_step(cors_client, sid) == 0  # a preflight runs nothing


def test_a_subdomain_pattern_allows_its_subdomains_only(cors_client: httpx.Client) -> None:
    for origin in ("https://a.example.org", "https://b.c.example.org"):
        answer = cors_client.options("/v1/sessions", headers=preflight(origin))
        assert answer.status_code == 204, origin
        assert answer.headers["access-control-allow-origin"] == origin
    for origin in (
        "https://example.org",
        "http://a.example.org",
        "https://a.example.org.evil.net",
        "https://aexample.org",
    ):
        answer = cors_client.options("/v1/sessions", headers=preflight(origin))
        assert answer.status_code == 400, origin


@pytest.mark.parametrize(
    ("asked", "refused"),
    [
        (preflight(EVIL), "origin 'https://evil.example.net' is not allowed"),
        (preflight("null"), "origin 'null' is not allowed"),
        (preflight(APP, method="PUT"), "method 'PUT' is not allowed"),
        (preflight(APP, headers="authorization, x-custom, x-other"), "request headers x-custom, x-other are not"),
    ],
)
def test_a_preflight_that_is_not_allowed_is_400_without_cors_headers(
    cors_client: httpx.Client, asked: dict[str, str], refused: str
) -> None:
    sid = new_session(cors_client)
    answer = cors_client.options(STEP.format(sid=sid), headers=asked)
    assert assert_problem(answer, 400, contains=refused)["type"] == REFUSED
    assert not cors_headers(answer)
    assert answer.headers["vary"] == "Origin"
    on_v2 = cors_client.options("/v2/models/gru/infer", headers=asked)  # /v2's own error form
    assert on_v2.status_code == 400 and refused in on_v2.json()["error"]
    assert session_step(cors_client, sid) == 0


def test_options_that_is_not_a_preflight_is_routed_as_before(cors_client: httpx.Client) -> None:
    sid = new_session(cors_client)
    answer = cors_client.options(STEP.format(sid=sid), headers={"Origin": APP})  # no Access-Control-Request-Method
    assert_problem(answer, 405)
    assert answer.headers["allow"] == "POST"
    assert answer.headers["access-control-allow-origin"] == APP


# ---- actual requests ------------------------------------------------------------------------------------------------


def test_responses_to_an_allowed_origin_carry_the_cors_headers(cors_client: httpx.Client) -> None:
    def allowed(response: httpx.Response) -> None:
        assert response.headers["access-control-allow-origin"] == APP, response.headers
        assert response.headers["access-control-expose-headers"] == (
            "Retry-After, WWW-Authenticate, X-Step, X-Tensors, Inference-Header-Content-Length"
        )
        assert response.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in response.headers

    created = cors_client.post("/v1/sessions", json={"model": "gru"}, headers=auth())  # a FastAPI route
    assert created.status_code == 201
    allowed(created)
    sid = created.json()["session_id"]
    stepped = cors_client.post(STEP.format(sid=sid), json={"inputs": X}, headers=auth())  # a hot route
    assert stepped.status_code == 200
    allowed(stepped)
    binary = cors_client.post(
        STEP.format(sid=sid),
        content=np.zeros((1, 1, 3), np.float32).tobytes(),
        headers={**auth(), "Content-Type": "application/octet-stream", "X-Shape": "1,1,3"},
    )
    assert binary.status_code == 200 and binary.headers["x-step"] == "2"
    allowed(binary)
    infer = cors_client.post(
        "/v2/models/gru/infer",
        json={"inputs": [{"name": "x", "shape": [1, 1, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.3]}]},
        headers=auth(),
    )
    assert infer.status_code == 200
    allowed(infer)
    # errors: a problem+json 4xx, a 401 without the key (the page can read why), /v2's error form
    missing = cors_client.post(STEP.format(sid="nope"), json={"inputs": X}, headers=auth())
    assert_problem(missing, 404)
    allowed(missing)
    unauthorized = cors_client.post(STEP.format(sid=sid), json={"inputs": X}, headers={"Origin": APP})
    assert_problem(unauthorized, 401)
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    allowed(unauthorized)
    bad = cors_client.post("/v2/models/nope/infer", json={"inputs": []}, headers=auth())
    assert bad.status_code == 404 and "error" in bad.json()
    allowed(bad)
    assert session_step(cors_client, sid) == 2


def test_the_key_is_still_needed_after_a_preflight(cors_client: httpx.Client) -> None:
    sid = new_session(cors_client)
    assert cors_client.options(STEP.format(sid=sid), headers=preflight(APP)).status_code == 204
    assert_problem(cors_client.post(STEP.format(sid=sid), json={"inputs": X}, headers={"Origin": APP}), 401)
    assert_problem(cors_client.get(f"/v1/sessions/{sid}", headers={"Origin": APP}), 401)
    assert session_step(cors_client, sid) == 0


def test_a_disallowed_or_missing_origin_gets_no_cors_header(cors_client: httpx.Client) -> None:
    sid = new_session(cors_client)
    for origin in (EVIL, None):
        stepped = cors_client.post(STEP.format(sid=sid), json={"inputs": X}, headers=auth(origin))
        assert stepped.status_code == 200  # CORS is the browser's to enforce: the server only withholds its consent
        assert not cors_headers(stepped)
        assert stepped.headers["vary"] == "Origin"  # the answer depends on the origin: caches must key on it
        models = cors_client.get("/v1/models", headers=auth(origin))
        assert models.status_code == 200 and not cors_headers(models)


def test_preflights_are_counted_apart(cors_client: httpx.Client) -> None:
    cors_client.options("/v1/sessions", headers=preflight(APP))
    cors_client.options("/v1/sessions", headers=preflight(EVIL))
    text = cors_client.get("/metrics").text
    assert 'rnnserve_requests_total{method="OPTIONS",route="<cors-preflight>",status="204"}' in text
    assert 'rnnserve_requests_total{method="OPTIONS",route="<cors-preflight>",status="400"}' in text


# ---- any origin, credentials ----------------------------------------------------------------------------------------


def test_any_origin_is_answered_with_a_star_and_no_vary(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(cors_allow_origins="*", cors_allow_headers="*", cors_allow_methods="*")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.options("/v1/sessions", headers=preflight(EVIL, method="PATCH", headers="x-anything"))
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "*"
        assert answer.headers["access-control-allow-methods"] == "PATCH"  # `*`: what the preflight asks for
        assert answer.headers["access-control-allow-headers"] == "x-anything"
        assert answer.headers["vary"] == "Access-Control-Request-Headers"
        created = client.post("/v1/sessions", json={"model": "gru"}, headers={"Origin": EVIL})
        assert created.status_code == 201
        assert created.headers["access-control-allow-origin"] == "*"
        assert "vary" not in created.headers
        plain = client.get("/v1/models")  # no Origin: not a cross-origin request
        assert not cors_headers(plain)
        client.delete(f"/v1/sessions/{created.json()['session_id']}")


def test_credentials_are_allowed_only_when_asked(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(cors_allow_origins=APP, cors_allow_credentials=True)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.options("/v1/models", headers=preflight(APP, method="GET", headers=None))
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert "access-control-allow-headers" not in answer.headers  # none asked for
        models = client.get("/v1/models", headers={"Origin": APP})
        assert models.headers["access-control-allow-origin"] == APP
        assert models.headers["access-control-allow-credentials"] == "true"


def test_vary_is_merged_with_a_vary_the_response_has() -> None:
    added: Any = [(b"access-control-allow-origin", b"https://a")]
    assert with_headers([(b"Vary", b"Accept")], added, True) == [(b"Vary", b"Accept, Origin"), *added]
    assert with_headers([(b"vary", b"origin")], [], True) == [(b"vary", b"origin")]
    assert with_headers([], [], True) == [(b"vary", b"Origin")]
    assert with_headers([(b"x", b"1")], added, False) == [(b"x", b"1"), *added]


def test_a_websocket_from_an_origin_not_listed_is_refused(cors_server: ServerThread, cors_client: httpx.Client) -> None:
    """Browsers let any page open a WebSocket: with origins listed, a handshake from another origin gets 403 (the
    stream never starts), one from a listed origin or from no browser (no Origin) is served."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = f"{cors_server.ws_url}/v1/streams"
    key = {"Authorization": f"Bearer {KEY}"}
    for origin in ("https://evil.example.com", "https://example.org"):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin=origin, additional_headers=key)
        assert refused.value.response.status_code == 403
    for origin in (APP, "https://app.example.org", None):
        with connect(url, origin=origin, additional_headers=key) as ws:
            ws.send('{"open": [{"model": "gru"}]}')
            assert "opened" in ws.recv(timeout=30)
    sid = new_session(cors_client)  # the single-session stream too
    with pytest.raises(InvalidStatus):
        connect(f"{cors_server.ws_url}/v1/sessions/{sid}/stream", origin="https://evil.example.com")
