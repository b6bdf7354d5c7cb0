"""The service as the HTTP-level tests run it (tests/service and tests/v2 share these):

* `ServerThread`: a real uvicorn server, with the CLI's own uvicorn options, in a thread on a port the OS picks;
* `in_process(settings)`: the app in the test's event loop, its lifespan started by hand (httpx's ASGI transport
  does not run it), until its models are ready;
* `Routed(app)`: the same app called through FastAPI's own middleware and routing, the hot path skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from rnnserve.api.edge import EdgeApp
from rnnserve.app import create_app
from rnnserve.cli import uvicorn_options
from rnnserve.settings import Settings


class ServerThread:
    """A uvicorn server for one app, in a daemon thread (its own event loop), on a port the OS picks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": 0, "log_level": "warning"}
        # The tests' clients keep connections across tests: with uvicorn's 5 s keep-alive, a reused connection could
        # race the server closing it ("Server disconnected without sending a response").
        options["timeout_keep_alive"] = 120
        self.server = uvicorn.Server(uvicorn.Config(self.app, lifespan="on", **options))
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        """host:port, as tritonclient takes it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}"

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        if wait_ready:
            self.wait_ready(deadline - time.monotonic())
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url) as client:
            while client.get("/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the test server is not ready: {client.get('/readyz').text}")
                time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[EdgeApp]:
    app = create_app(settings)
    assert isinstance(app, EdgeApp)
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, incoming.get, outgoing.put)
    )
    await incoming.put({"type": "lifespan.startup"})
    assert (await outgoing.get())["type"] == "lifespan.startup.complete"
    while not app.serving.service.models_ready:
        await asyncio.sleep(0.02)
    try:
        yield app
    finally:
        await incoming.put({"type": "lifespan.shutdown"})
        await lifespan


class Routed:
    """The same application, called through FastAPI's own middleware and routing (the hot path skipped)."""

    def __init__(self, app: EdgeApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)
