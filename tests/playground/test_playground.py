"""The playground in a real browser, against a real server on the bundled models: what the page shows is what the
API gives for the same inputs, reset and saved states behave as Keras' reset_states(), errors show the problem's
title and detail, and no request leaves the machine."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from playground_harness import API_KEY, PREFIX, Screenshots, Tab, bundled_settings, other_models, start_prefixed

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STREAMED = ["forecaster", "orbit"]
TEXT_50 = "alice was beginning to get very tired of sitting by her sister"[:50]


def vocab_ids() -> dict[str, int]:
    from rnnserve.settings import bundled_models_dir

    tokens = json.loads((bundled_models_dir() / "chargru.vocab.json").read_text(encoding="utf-8"))["tokens"]
    return {ch: i for i, ch in enumerate(tokens) if i}


def local(tab: Tab, server: ServerThread, prefix: str = "") -> None:
    """Every request of the page went to the server (no CDN, no fonts, no analytics), and nothing failed."""
    assert tab.requests, "the page made no request"
    assert tab.outside(server.url + prefix + "/", server.ws_url + prefix + "/") == []
    assert tab.errors == []


def stream(tab: Tab, steps: int) -> None:
    """Pause, reset, then stream `steps` steps at full speed and wait until they are all shown."""
    page = tab.page
    tab.wait("s.running || s.inputs.length > 0")
    page.click("#reset")
    tab.wait("!s.running && s.step === 0 && s.inputs.length === 0")
    page.fill("#stop-after", str(steps))
    page.eval_on_selector("#speed", "e => { e.value = 200; e.dispatchEvent(new Event('input')); }")
    page.click("#start")
    tab.wait(f"!s.running && s.inputs.length === {steps}")


def predict(api: httpx.Client, model: str, inputs: Any, **extra: Any) -> Any:
    r = api.post(f"/v1/models/{model}/predict", json={"inputs": inputs, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def fresh_step(api: httpx.Client, model: str, inputs: Any) -> Any:
    sid = api.post("/v1/sessions", json={"model": model}).json()["session_id"]
    try:
        r = api.post(f"/v1/sessions/{sid}/step", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        return r.json()["outputs"]
    finally:
        api.delete(f"/v1/sessions/{sid}")


def type_text(tab: Tab, text: str, total: int) -> None:
    tab.page.type("#text", text)
    tab.wait(f"s.step === {total} && s.inputs.length === {total}")


def test_page_lists_the_models_with_their_signatures(open_tab: Callable[..., Tab], server: ServerThread) -> None:
    html = httpx.get(server.url + "/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    tab = open_tab(server.url + "/")
    models = tab.page.locator("#models li")
    assert sorted(models.evaluate_all("els => els.map(e => e.dataset.model)")) == ["chargru", "forecaster", "orbit"]
    text = tab.page.inner_text("#models")
    for part in ("signal float32 [·,·,1]", "chars int64 [·,·]", "next_char float32 [·,·,39]", "lstm/c float32 [·,16]"):
        assert part in text
    assert tab.state(".model.name") == "forecaster"  # the default panel
    local(tab, server)


@pytest.mark.parametrize("model", STREAMED)
def test_streaming_50_steps_shows_the_api_numbers(
    model: str, open_tab: Callable[..., Tab], server: ServerThread, api: httpx.Client, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{server.url}/#{model}")
    assert tab.state(".panel") == {"forecaster": "signal", "orbit": "orbit"}[model]
    stream(tab, 50)
    state = tab.state()
    assert state["step"] == 50 and tab.page.inner_text("#step") == "50"
    assert tab.page.evaluate("window.playground.panel().chart.points") == 50
    assert len(state["outputs"]) == 50 and len(state["states"]) == 50 and len(state["latencies"]) == 50
    assert all(ms > 0 for ms in state["latencies"])
    assert "ms" in tab.page.inner_text("#latency") and "idle" in tab.page.inner_text("#expiry")
    assert tab.page.inner_text("#transport") == "WebSocket binary"
    expected = np.asarray(predict(api, model, [state["inputs"]])["outputs"][0])
    np.testing.assert_allclose(np.asarray(state["outputs"]), expected, rtol=1e-5, atol=1e-5)
    # the heatmap's last column is the session's state, as the API returns it after the same 50 steps
    states = predict(api, model, [state["inputs"]], return_state=True)["states"]
    np.testing.assert_allclose(state["states"][-1], np.concatenate([s[0] for s in states]), rtol=1e-5, atol=1e-5)
    screenshots.save(tab, f"playground-{model}", readme=True)
    local(tab, server)


def test_chargru_50_typed_characters_show_the_api_numbers(
    open_tab: Callable[..., Tab], server: ServerThread, api: httpx.Client, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{server.url}/#chargru")
    assert tab.state(".panel") == "text"
    type_text(tab, TEXT_50, 50)
    assert tab.page.evaluate("window.playground.panel().chart.points") == 50
    ids = vocab_ids()
    sent = [ids[ch] for ch in TEXT_50]
    assert [v[0] for v in tab.state(".inputs")] == sent
    expected = np.asarray(predict(api, "chargru", [sent])["outputs"][0])
    np.testing.assert_allclose(np.asarray(tab.state(".outputs")), expected, rtol=1e-5, atol=1e-6)
    top = tab.page.inner_text("#topk")
    best = int(np.argmax(expected[-1][1:])) + 1
    assert f"{100 * expected[-1][best]:.1f}%" in top
    screenshots.save(tab, "chargru-50-steps")
    local(tab, server)


def test_chargru_continuation_equals_a_greedy_predict(
    open_tab: Callable[..., Tab], server: ServerThread, api: httpx.Client, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{server.url}/#chargru")
    prompt = "twinkle, twinkle, "
    type_text(tab, prompt, len(prompt))
    tab.page.fill("#continue-n", "40")
    tab.page.fill("#temperature", "0")
    tab.page.click("#continue")
    tab.wait(f"s.continuation.length === 40 && s.step === {len(prompt) + 40}")
    ids = vocab_ids()
    tokens = {i: ch for ch, i in ids.items()}
    sequence, expected = [ids[ch] for ch in prompt], ""
    for _ in range(40):
        probs = np.asarray(predict(api, "chargru", [sequence])["outputs"][0][-1])
        next_id = int(np.argmax(probs[1:])) + 1  # id 0 is padding
        sequence.append(next_id)
        expected += tokens[next_id]
    assert tab.state(".continuation") == expected
    assert tab.page.text_content("#continuation") == expected
    assert tab.page.input_value("#text") == prompt + expected
    screenshots.save(tab, "playground-chargru", readme=True)
    local(tab, server)


@pytest.mark.parametrize("model", [*STREAMED, "chargru"])
def test_reset_sets_the_counter_to_0_and_the_next_output_is_a_fresh_sessions(
    model: str, open_tab: Callable[..., Tab], server: ServerThread, api: httpx.Client, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{server.url}/#{model}")
    if model == "chargru":
        type_text(tab, "humpty dumpty", 13)
    else:
        stream(tab, 12)
    session = tab.state(".sessionId")
    tab.page.click("#reset")
    tab.wait("s.step === 0 && s.inputs.length === 0 && !s.running")
    assert tab.page.inner_text("#step") == "0" and tab.state(".sessionId") == session
    assert api.get(f"/v1/sessions/{session}").json()["step"] == 0
    if model == "chargru":
        assert tab.page.input_value("#text") == ""
        type_text(tab, "s", 1)
    else:
        tab.page.click("#step-once")
        tab.wait("s.inputs.length === 1 && s.step === 1")
    state = tab.state()
    inputs = [[v[0] for v in state["inputs"]]] if model == "chargru" else [state["inputs"]]
    expected = np.asarray(fresh_step(api, model, inputs)[0])
    np.testing.assert_allclose(np.asarray(state["outputs"]), expected, rtol=1e-5, atol=1e-6)
    screenshots.save(tab, f"reset-{model}")
    local(tab, server)


def test_reset_to_a_saved_state(
    open_tab: Callable[..., Tab], server: ServerThread, api: httpx.Client, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{server.url}/#orbit")
    stream(tab, 20)
    tab.page.click("#save")
    tab.page.wait_for_function("document.querySelector('#saved').textContent.includes('step 20')")
    saved = tab.state(".saved.states")
    assert [np.asarray(s).shape for s in saved] == [(1, 16)] * 3
    tab.page.fill("#stop-after", "30")
    tab.page.click("#start")
    tab.wait("!s.running && s.inputs.length === 30")
    tab.page.click("#restore")
    tab.wait("s.step === 0 && s.inputs.length === 0 && !s.running")
    tab.page.click("#step-once")
    tab.wait("s.inputs.length === 1")
    state = tab.state()
    expected = predict(api, "orbit", [state["inputs"]], initial_state=saved)["outputs"][0]
    np.testing.assert_allclose(np.asarray(state["outputs"]), np.asarray(expected), rtol=1e-5, atol=1e-6)
    screenshots.save(tab, "reset-to-saved-orbit")
    local(tab, server)


def test_delete_then_a_new_session(
    open_tab: Callable[..., Tab], server: ServerThread, api: httpx.Client, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{server.url}/#forecaster")
    tab.wait("s.step > 3")
    session = tab.state(".sessionId")
    tab.page.click("#delete")
    tab.wait("s.error !== null && s.error.title === 'Session deleted'")
    assert api.get(f"/v1/sessions/{session}").status_code == 404
    assert tab.page.is_visible("#error") and "Session deleted" in tab.page.inner_text("#error")
    assert tab.page.is_disabled("#reset") and tab.page.is_disabled("#step-once")
    screenshots.save(tab, "deleted")
    tab.page.click("#new-session")
    tab.wait(f"s.sessionId !== null && s.sessionId !== {session!r} && s.step > 0 && s.error === null")
    assert tab.page.is_hidden("#error")
    local(tab, server)


@pytest.fixture(scope="module")
def short_ttl_server() -> Iterator[ServerThread]:
    running = ServerThread(bundled_settings(default_ttl_s=1.0)).start()
    yield running
    running.stop()


def test_an_expired_session_shows_the_problem(
    open_tab: Callable[..., Tab], short_ttl_server: ServerThread, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{short_ttl_server.url}/#forecaster")
    tab.wait("s.step > 2")
    tab.page.click("#start")  # pause
    tab.wait("!s.running")
    time.sleep(1.6)
    tab.page.click("#step-once")
    tab.wait("s.error !== null")
    error = tab.state(".error")
    assert error["title"] == "Session not found" and error["detail"]
    shown = tab.page.inner_text("#error")
    assert "Session not found" in shown and error["detail"] in shown
    tab.wait("document.querySelector('#expiry').textContent === 'gone'")
    assert tab.page.is_disabled("#start")
    screenshots.save(tab, "expired")
    local(tab, short_ttl_server)


def painted(tab: Tab, selector: str) -> int:
    """How many pixels of a canvas are painted (a blank canvas has none)."""
    return int(
        tab.page.evaluate(
            """sel => { const c = document.querySelector(sel);
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""",
            selector,
        )
    )


def test_a_server_error_shows_the_problem_not_a_blank_chart(
    open_tab: Callable[..., Tab], server: ServerThread, screenshots: Screenshots
) -> None:
    body = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "the session store is down"}

    def refuse_sessions(page: Any) -> None:
        page.route(
            f"{server.url}/v1/sessions",
            lambda route: route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(body)),
        )

    tab = open_tab(f"{server.url}/#forecaster", wait_session=False, before=refuse_sessions)
    tab.wait("s.error !== null")
    assert tab.state(".error") == {"title": "Service Unavailable", "detail": "the session store is down", "status": 503}
    assert "Service Unavailable" in tab.page.inner_text("#error")
    assert "the session store is down" in tab.page.inner_text("#error")
    assert painted(tab, "#chart") > 0 and painted(tab, "#heatmap") > 0  # the problem, drawn where the data would be
    screenshots.save(tab, "server-error")
    local(tab, server)


def test_a_bad_input_shows_the_servers_problem(
    open_tab: Callable[..., Tab], server: ServerThread, screenshots: Screenshots, tmp_path: Path
) -> None:
    tab = open_tab(f"{server.url}/#forecaster/json")
    assert tab.state(".panel") == "json"
    tab.page.fill("#json", "[[[0.1, 0.2]]]")
    tab.page.click("#json-step")
    tab.wait("s.error !== null")
    error = tab.state(".error")
    assert error["title"] == "Invalid input" and "dimension 2 must be 1" in error["detail"]
    assert error["detail"] in tab.page.inner_text("#error") and tab.state(".step") == 0
    tab.page.fill("#json", "[[[0.1], [0.2]]]")
    tab.page.click("#json-step")
    tab.wait("s.error === null && s.step === 2")
    assert '"step": 2' in tab.page.inner_text("#json-out")
    uploaded = tmp_path / "inputs.json"
    uploaded.write_text("[[[0.5], [0.25], [0.125]]]")
    tab.page.set_input_files("#json-file", str(uploaded))
    tab.page.wait_for_function("document.querySelector('#json').value.includes('0.125')")
    tab.page.click("#json-step")
    tab.wait("s.error === null && s.step === 5")
    assert '"states"' in tab.page.inner_text("#json-out")
    screenshots.save(tab, "json-panel")
    local(tab, server)


@pytest.fixture(scope="module")
def key_server() -> Iterator[ServerThread]:
    running = ServerThread(bundled_settings(api_key=API_KEY)).start()
    yield running
    running.stop()


def test_with_an_api_key_the_page_asks_for_it_and_keeps_it_in_the_tab(
    open_tab: Callable[..., Tab], key_server: ServerThread, api: httpx.Client, screenshots: Screenshots
) -> None:
    tab = open_tab(f"{key_server.url}/#forecaster", wait_session=False)
    tab.page.wait_for_selector("#key-form", state="visible")
    assert tab.state(".error.status") == 401
    screenshots.save(tab, "api-key-asked")
    tab.page.fill("#key-input", API_KEY)
    tab.page.press("#key-input", "Enter")
    tab.wait("s.sessionId !== null && s.step >= 5")
    assert tab.page.inner_text("#transport") == "HTTP binary (API key)"
    assert tab.page.evaluate("sessionStorage.getItem('rnnserve-api-key')") == API_KEY
    assert tab.page.evaluate("localStorage.length") == 0 and API_KEY not in tab.page.url
    assert not any(API_KEY in u for u in tab.requests + tab.websockets)
    stream(tab, 10)
    state = tab.state()
    with httpx.Client(base_url=key_server.url, headers={"authorization": f"Bearer {API_KEY}"}) as keyed:
        expected = predict(keyed, "forecaster", [state["inputs"]])["outputs"][0]
    np.testing.assert_allclose(np.asarray(state["outputs"]), np.asarray(expected), rtol=1e-5, atol=1e-5)
    other = open_tab(f"{key_server.url}/", wait_session=False)  # another tab does not have the key
    other.page.wait_for_selector("#key-form", state="visible")
    local(tab, key_server)


@pytest.fixture(scope="module")
def prefixed_server() -> Iterator[ServerThread]:
    running = start_prefixed(bundled_settings())
    yield running
    running.stop()


@pytest.mark.parametrize("model", [*STREAMED, "chargru"])
def test_under_a_root_path_behind_a_proxy(
    model: str, open_tab: Callable[..., Tab], prefixed_server: ServerThread, screenshots: Screenshots
) -> None:
    assert httpx.get(f"{prefixed_server.url}/").status_code == 404  # only the prefix is served
    tab = open_tab(f"{prefixed_server.url}{PREFIX}/#{model}")
    if model == "chargru":
        type_text(tab, "the queen", 9)
    else:
        tab.wait("s.step >= 10")
    tab.page.click("#reset")
    tab.wait("s.step === 0")
    assert tab.state(".error") is None
    screenshots.save(tab, f"root-path-{model}")
    local(tab, prefixed_server, PREFIX)


def test_the_stream_is_a_websocket_under_a_root_path(
    open_tab: Callable[..., Tab], prefixed_server: ServerThread
) -> None:
    tab = open_tab(f"{prefixed_server.url}{PREFIX}/#forecaster")
    tab.wait("s.step >= 3")
    assert any(u.startswith(f"{prefixed_server.ws_url}{PREFIX}/v1/sessions/") for u in tab.websockets)
    assert tab.page.inner_text("#transport") == "WebSocket binary"


@pytest.fixture(scope="module")
def no_websocket_server() -> Iterator[ServerThread]:
    running = start_prefixed(bundled_settings(), websockets=False)
    yield running
    running.stop()


def test_without_websockets_the_page_steps_over_http(
    open_tab: Callable[..., Tab], no_websocket_server: ServerThread, screenshots: Screenshots
) -> None:
    """Behind a proxy that does not pass WebSockets, the page goes on with binary HTTP steps: same numbers."""
    server = no_websocket_server
    tab = open_tab(f"{server.url}{PREFIX}/#forecaster")
    stream(tab, 20)
    assert tab.page.inner_text("#transport").startswith("HTTP binary (the WebSocket could not be opened")
    assert tab.state(".error") is None and tab.state(".step") == 20
    with httpx.Client(base_url=server.url + PREFIX) as api:
        expected = predict(api, "forecaster", [tab.state(".inputs")])["outputs"][0]
    np.testing.assert_allclose(np.asarray(tab.state(".outputs")), np.asarray(expected), rtol=1e-5, atol=1e-5)
    screenshots.save(tab, "no-websocket")
    local(tab, server, PREFIX)


def test_no_request_leaves_the_machine(open_tab: Callable[..., Tab], server: ServerThread) -> None:
    tab = open_tab(f"{server.url}/#forecaster")
    tab.wait("s.step >= 3")
    for model in ("orbit", "chargru", "forecaster"):
        tab.page.click(f"#models li[data-model={model}]")
        # a panel that streams by itself (orbit, forecaster) has taken a step, so its stream is open
        tab.wait(f"s.model.name === {model!r} && s.sessionId !== null && (s.step >= 1 || !s.running)")
    assert len(tab.websockets) >= 3  # a stream per session that streamed
    local(tab, server)


def test_page_weight_and_time_to_first_point(
    open_tab: Callable[..., Tab], server: ServerThread, screenshots: Screenshots
) -> None:
    """Measures what the README quotes: the page's HTML + JS + CSS bytes, and navigation -> first streamed point."""
    tab = open_tab(f"{server.url}/#forecaster", wait_session=False)
    tab.wait("s.firstPointAt !== null")
    first_ms = tab.state(".firstPointAt")
    kinds = ("document", "script", "stylesheet")
    assets = {r.url: len(r.body()) for r in tab.responses if r.request.resource_type in kinds}
    weight = sum(assets.values())
    timeline = tab.page.evaluate(
        """() => Object.fromEntries([
            ["html", performance.getEntriesByType("navigation")[0].responseEnd],
            ["dom_content_loaded", performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd],
            ...performance.getEntriesByType("resource").map((e) => [new URL(e.name).pathname, e.responseEnd]),
        ].map(([k, v]) => [k, Math.round(v)]))"""
    )
    report = {"page_bytes": weight, "files": assets, "first_point_ms": round(first_ms, 1), "timeline_ms": timeline}
    (screenshots.folder / "playground-metrics.json").write_text(json.dumps(report, indent=1))
    print(f"\nplayground: {weight} bytes in {len(assets)} files; first streamed point {first_ms:.0f} ms; {timeline}")
    assert len(assets) == 6 and weight < 80_000
    assert first_ms < 10_000
    local(tab, server)


@pytest.fixture(scope="module")
def other_models_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The service tests' models: several outputs, token ids without a vocabulary, a Bidirectional model (no
    sessions), a time-major one, and an unreadable file."""
    running = ServerThread(bundled_settings(models=other_models(tmp_path_factory.mktemp("other-models")))).start()
    yield running
    running.stop()


def test_any_other_model_gets_a_panel(
    open_tab: Callable[..., Tab], other_models_server: ServerThread, screenshots: Screenshots
) -> None:
    server = other_models_server
    tab = open_tab(f"{server.url}/#tokens")
    assert tab.page.get_attribute("#models li[data-model=broken]", "class") == "off "  # failed: listed, not chosen
    assert "failed" in tab.page.inner_text("#models li[data-model=broken]")
    assert tab.state(".panel") == "json"  # int64 ids without a vocabulary file
    tab.page.click("#json-random")
    tab.page.click("#json-step")
    tab.wait("s.error === null && s.step === 4")
    assert '"states"' in tab.page.inner_text("#json-out")
    screenshots.save(tab, "other-tokens")

    tab.page.click("#models li[data-model=bidirectional]")
    tab.wait("s.model.name === 'bidirectional' && s.panel === 'json'")
    assert tab.state(".sessionId") is None and tab.page.is_disabled("#json-step")
    tab.page.click("#json-predict")
    tab.page.wait_for_function("document.querySelector('#json-out').textContent.includes('outputs')")
    assert tab.state(".error") is None

    with httpx.Client(base_url=server.url) as api:
        for model in ("lstm_state", "time_major"):
            tab.page.click(f"#models li[data-model={model}]")
            tab.wait(f"s.model.name === {model!r} && s.sessionId !== null && s.panel === 'signal'")
            stream(tab, 10)
            inputs = tab.state(".inputs")
            if model == "time_major":  # [T, B, F] in, [T, B, U] out
                out = np.asarray(predict(api, model, [[x] for x in inputs])["outputs"])[:, 0]
            else:  # several outputs: the page plots the first
                outputs = predict(api, model, [inputs])["outputs"]
                out = np.asarray(outputs[next(iter(outputs))][0])
            np.testing.assert_allclose(np.asarray(tab.state(".outputs")), out, rtol=1e-5, atol=1e-5)
    screenshots.save(tab, "other-time-major")
    local(tab, server)
