"""/docs and /redoc render the whole schema in a real browser with every request to another host refused: Swagger
UI lists the operations (the hot ones too) and ReDoc shows them. The browser is the machine's own Chromium
(`RNNSERVE_CHROMIUM`, else `chromium` on the PATH); without one the test skips."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from app_harness import ServerThread

from rnnserve.settings import Settings

playwright_api = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parents[2]


def chromium() -> str | None:
    configured = os.environ.get("RNNSERVE_CHROMIUM")
    if configured:
        return configured
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    running = ServerThread(Settings(models=ROOT / "models")).start()
    yield running
    running.stop()


def test_swagger_ui_and_redoc_render_offline(server: ServerThread) -> None:
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium, or set RNNSERVE_CHROMIUM)")
    elsewhere: list[str] = []

    def only_the_server(route: playwright_api.Route) -> None:
        if urlsplit(route.request.url).netloc == server.address or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", only_the_server)
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert any("/v1/models/{model}/predict" in p for p in paths), paths
            assert any("/v2/models/{model}/infer" in p for p in paths), paths
            assert page.locator("text=Unable to render").count() == 0

            page.goto(f"{server.url}/redoc")
            page.wait_for_selector(
                "text=Predict whole sequences, JSON or raw tensor bytes", state="attached", timeout=30_000
            )
            assert page.locator("text=Step a session: the next timesteps, JSON or raw tensor bytes").count() >= 1
        finally:
            browser.close()
    assert not elsewhere, f"the pages asked other hosts for {elsewhere}"
