"""Browser tests of the playground (`GET /`): a real server on the bundled models, driven by Chromium through
Playwright. The browser is the machine's own (Debian's `chromium`, or `RNNSERVE_CHROMIUM`): nothing is
downloaded. These tests skip only where Playwright or a Chromium executable cannot be had.

Each test saves screenshots to a folder under pytest's temporary directory (printed in the summary), or to
`RNNSERVE_SCREENSHOT_DIR` when set (`RNNSERVE_SCREENSHOT_DIR=docs/img` remakes the README's screenshots).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_harness import ServerThread
from playground_harness import VIEWPORT, Screenshots, Tab, bundled_settings, chromium_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for one test module. Not for the session: while Playwright's sync API runs, it marks its own event
    loop as running in this thread, so asyncio tests after it could not run theirs."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium, or set RNNSERVE_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    wanted = os.environ.get("RNNSERVE_SCREENSHOT_DIR")
    readme = Path(wanted) if wanted else None
    if readme is not None:
        readme.mkdir(parents=True, exist_ok=True)
    folder = tmp_path_factory.mktemp("playground-screenshots")
    print(f"\nplayground screenshots: {folder}")
    return Screenshots(folder, readme)


@pytest.fixture(scope="session")
def server() -> Iterator[ServerThread]:
    running = ServerThread(bundled_settings()).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def api(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.fixture
def open_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    contexts: list[Any] = []

    def open_(url: str, *, wait_session: bool = True, before: Callable[[Any], None] | None = None) -> Tab:
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        contexts.append(context)
        page = context.new_page()
        if before is not None:
            before(page)
        tab = Tab(page)
        page.on("request", lambda r: tab.requests.append(r.url))
        page.on("response", lambda r: tab.responses.append(r))
        page.on("websocket", lambda ws: tab.websockets.append(ws.url))
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        page.goto(url)
        if wait_session:
            tab.wait("s.sessionId !== null")
        return tab

    yield open_
    for context in contexts:
        context.close()
