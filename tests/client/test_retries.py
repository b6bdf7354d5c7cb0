"""Retries: a step whose reply was lost after the server committed it is sent again and answered from the
server's cache (the session advances once); 503 waits as `Retry-After` says; a request that cannot be sent twice
safely (creating a session) is not resent after a lost reply."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from client_proxy import Proxy

from rnnserve.client import Client, ConnectionFailed, Retry, ServiceUnavailable
from rnnserve.client.wire import retry_after

QUICK = Retry(retries=3, backoff_s=0.01, max_backoff_s=0.05)
X = np.linspace(-1, 1, 5, dtype=np.float32).reshape(1, 5, 1)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_step_retried_after_its_reply_was_lost_applies_once(proxy: Proxy, server: ServerThread, binary: bool) -> None:
    with Client(proxy.url, retry=QUICK, binary=binary) as client, Client(server.url) as direct:
        expected = direct.predict("forecaster", np.concatenate([X, X], axis=1), return_state=True)
        with client.create_session("forecaster") as session:
            first = session.step(X)
            proxy.cut_after_reply(b"/step")
            second = session.step(X)  # committed by the server, reply cut by the proxy, sent again
            assert proxy.cut == 1 and len(proxy.seen) == 2  # the step reached the server twice
            assert second.step == 10 and session.seq == 10
            held = direct.session(session.id).info()
            assert held.step == 10  # advanced once: 5 + 5, not 15
            np.testing.assert_allclose(
                np.concatenate([first.output, second.output], axis=1), expected.output, atol=1e-6
            )
            np.testing.assert_allclose(held.states[0], expected.states[0], atol=1e-6)  # type: ignore[index]
            assert session.step(X).step == 15


def test_a_reset_and_a_delete_retried_after_a_lost_reply(proxy: Proxy, server: ServerThread) -> None:
    with Client(proxy.url, retry=QUICK) as client, Client(server.url) as direct:
        session = client.create_session("orbit")
        session.step(np.ones((1, 2, 2)))
        proxy.cut_after_reply(b"/reset")
        session.reset()
        assert proxy.cut == 1 and direct.session(session.id).seq == 0
        proxy.cut_after_reply(b"DELETE")
        session.delete()  # the first try deleted it; the resend's 404 means done
        assert proxy.cut == 2
        with pytest.raises(Exception, match="404"):
            direct.session(session.id)


def test_creating_a_session_is_not_resent_after_a_lost_reply(proxy: Proxy) -> None:
    with Client(proxy.url, retry=QUICK) as client:
        proxy.cut_after_reply(b"POST /v1/sessions ")
        with pytest.raises(ConnectionFailed, match="no answer after 1 try"):
            client.create_session("forecaster")
        assert len(proxy.seen) == 1


def test_503_is_retried_after_retry_after(proxy: Proxy) -> None:
    with Client(proxy.url, retry=QUICK) as client:
        client.model("forecaster")
        proxy.unavailable(b"/predict", times=2, retry_after="1")
        started = time.monotonic()
        result = client.predict("forecaster", X)
        assert result.output.shape == (1, 5, 1)
        assert len(proxy.seen) == 3 and proxy.seen[2] - proxy.seen[0] >= 2.0 - 0.05
        assert time.monotonic() - started >= 2.0 - 0.05


def test_503_without_retry_after_backs_off_then_gives_up(proxy: Proxy) -> None:
    with Client(proxy.url, retry=Retry(retries=2, backoff_s=0.2, max_backoff_s=1.0)) as client:
        client.model("forecaster")
        proxy.unavailable(b"/predict", times=5)
        with pytest.raises(ServiceUnavailable, match="proxy says wait"):
            client.predict("forecaster", X)
        gaps = np.diff(proxy.seen)
        # 0.2 s then 0.4 s, each jittered down to half (the upper bounds leave room for a busy machine)
        assert len(proxy.seen) == 3 and 0.1 <= gaps[0] <= 0.6 and 0.2 <= gaps[1] <= 1.0


def test_a_retry_after_beyond_the_limit_is_not_waited(proxy: Proxy) -> None:
    with Client(proxy.url, retry=Retry(max_retry_after_s=5)) as client:
        client.model("forecaster")
        proxy.unavailable(b"/predict", times=1, retry_after="3600")
        with pytest.raises(ServiceUnavailable):
            client.predict("forecaster", X)
        assert len(proxy.seen) == 1


def test_no_server_is_a_connection_failure_after_the_retries() -> None:
    from bench.redis_server import free_port

    with Client(f"http://127.0.0.1:{free_port()}", retry=QUICK) as client:
        with pytest.raises(ConnectionFailed, match="after 4 tries") as failed:
            client.models()
        assert isinstance(failed.value.__cause__, httpx.ConnectError)
        assert not client.healthy() and not client.ready()


def test_retry_after_values() -> None:
    assert retry_after("2") == 2.0 and retry_after(" 0.5 ") == 0.5 and retry_after(None) is None
    assert retry_after("Sun, 06 Dec 2026 04:00:10 GMT", now=1796529600.0) == 10.0
    assert retry_after("soon") is None
    assert Retry(retries=1).delay(1) is None and Retry().delay(0, 7.0) == 7.0
