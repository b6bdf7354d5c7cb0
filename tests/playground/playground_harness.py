"""What the playground's browser tests share: the machine's Chromium, a tab that records every request, screenshots,
and a server behind a root path as a proxy presents it (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from app_harness import ServerThread
from starlette.types import Receive, Scope, Send

from service.settings import Settings

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1100, "height": 760}
API_KEY = "playground-test-key-5f1c"
PREFIX = "/rnnserve"


def chromium_path() -> str | None:
    explicit = os.environ.get("RNNSERVE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Screenshots:
    """Every test's screenshots go to `folder` (under pytest's temporary directory); the README's three also go to
    `RNNSERVE_SCREENSHOT_DIR` when it is set."""

    def __init__(self, folder: Path, readme: Path | None) -> None:
        self.folder, self.readme = folder, readme

    def save(self, tab: Tab, name: str, *, readme: bool = False) -> Path:
        path = self.folder / f"{name}.png"
        tab.page.screenshot(path=str(path), full_page=True)
        if readme and self.readme is not None:
            shutil.copyfile(path, self.readme / f"{name}.png")
        return path


def bundled_settings(**overrides: Any) -> Settings:
    """The bundled models (forecaster, chargru, orbit), as `rnnserve serve` serves them."""
    return Settings(executor_threads=2, **overrides)


@dataclass
class Tab:
    """One page and everything it asked for: HTTP requests (with their responses) and WebSocket URLs."""

    page: Any
    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def state(self, expression: str = "") -> Any:
        return self.page.evaluate(f"window.playground.state{expression}")

    def wait(self, condition: str, timeout: float = 20_000) -> None:
        """Wait until a JavaScript condition on `s` (the page's state) holds."""
        self.page.wait_for_function(f"(() => {{ const s = window.playground.state; return {condition}; }})()",
                                    timeout=timeout)  # fmt: skip

    def outside(self, *origins: str) -> list[str]:
        """Every URL the page asked for that is not on one of `origins` (data: URLs stay in the page)."""
        return [u for u in self.requests + self.websockets if not u.startswith(("data:", *origins))]


class Prefixed:
    """What the app sees behind a proxy that serves it under PREFIX (`uvicorn --root-path`): the prefix in
    `root_path` and in the path. Anything outside the prefix is not forwarded (404)."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b"outside the prefix"})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app({**scope, "root_path": self.prefix}, receive, send)


def start_prefixed(settings: Settings) -> ServerThread:
    """A server whose app sits behind `Prefixed`, with the CLI's uvicorn options; ready when it returns."""
    from service.cli import uvicorn_options

    running = ServerThread(settings)
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": 0, "log_level": "warning"}
    running.server = uvicorn.Server(uvicorn.Config(Prefixed(running.app, PREFIX), lifespan="on", **options))
    running.thread = threading.Thread(target=running.server.run, name="test-uvicorn-prefixed", daemon=True)
    running.start(wait_ready=False)
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=running.url + PREFIX) as client:
        while client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the prefixed test server is not ready")
            time.sleep(0.05)
    return running
