"""What the playground's browser tests share: the machine's Chromium, a tab that records every request, screenshots,
and a server behind a root path as a proxy presents it (the fixtures are in conftest.py)."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from app_harness import ServerThread
from starlette.types import Receive, Scope, Send

from rnnserve.settings import Settings

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
        png = tab.page.screenshot(path=str(path), full_page=True)
        if readme and self.readme is not None:
            (self.readme / f"{name}.png").write_bytes(palette_png(decode_in_page(tab.page, png)))
        return path


# The page's own colours (style.css, panels.js): kept exact when a screenshot is reduced to a palette.
PAGE_COLOURS = ("#fbfbfd", "#ffffff", "#1d2330", "#6b7385", "#e3e6ee", "#2f6fde", "#e8772e", "#1b9e77", "#7a52c7",
                "#c23a2b", "#fdecea", "#c5cbd8", "#000000")  # fmt: skip


def decode_in_page(page: Any, png: bytes) -> np.ndarray:
    """A PNG's pixels [H, W, 3], decoded by the browser (from a data: URL; nothing leaves the page)."""
    source = "data:image/png;base64," + base64.b64encode(png).decode()
    width, height, data = page.evaluate(
        """async (src) => { const img = new Image(); img.src = src; await img.decode();
        const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data; let s = '';
        for (let i = 0; i < d.length; i += 32768) s += String.fromCharCode.apply(null, d.subarray(i, i + 32768));
        return [c.width, c.height, btoa(s)]; }""",
        source,
    )
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)[:, :, :3]


def palette_png(rgb: np.ndarray, colours: int = 128, bits: int = 5) -> bytes:
    """An 8-bit palette PNG of `rgb`: the page's colours and the most frequent others (a few tens of KB for a
    screenshot of the page, against ~170 KB in full colour), without an imaging library."""
    height, width, _ = rgb.shape
    step = 1 << (8 - bits)
    q = (rgb >> (8 - bits)).astype(np.int64)
    key = (q[..., 0] << (2 * bits)) | (q[..., 1] << bits) | q[..., 2]
    counts = np.bincount(key.ravel(), minlength=1 << (3 * bits))
    fixed = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in PAGE_COLOURS])
    frequent = np.argsort(counts)[::-1][: colours - len(fixed)]
    frequent = frequent[counts[frequent] > 0]
    mask = (1 << bits) - 1

    def centre(k: np.ndarray) -> np.ndarray:
        return np.stack([(k >> (2 * bits)) & mask, (k >> bits) & mask, k & mask], -1) * step + step // 2

    palette = np.concatenate([fixed, centre(frequent)]).astype(np.int64)
    bins = centre(np.arange(1 << (3 * bits)))
    nearest = np.concatenate(
        [((bins[i : i + 4096, None, :] - palette[None]) ** 2).sum(-1).argmin(1) for i in range(0, len(bins), 4096)]
    ).astype(np.uint8)
    indices = nearest[key]
    raw = b"".join(b"\x00" + row.tobytes() for row in indices)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", palette.clip(0, 255).astype(np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def bundled_settings(**overrides: Any) -> Settings:
    """The bundled models (forecaster, chargru, orbit), as `rnnserve serve` serves them."""
    return Settings(executor_threads=2, serve_partial=True, **overrides)


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
    `root_path` and in the path. Anything outside the prefix is not forwarded (404), nor is any WebSocket when
    `websockets` is False (a proxy that does not pass them: the handshake is refused)."""

    def __init__(self, app: Any, prefix: str, websockets: bool = True) -> None:
        self.app, self.prefix, self.websockets = app, prefix, websockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        outside = path != self.prefix and not path.startswith(self.prefix + "/")
        if outside or (scope["type"] == "websocket" and not self.websockets):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b"outside the prefix"})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app({**scope, "root_path": self.prefix}, receive, send)


def start_prefixed(settings: Settings, *, websockets: bool = True) -> ServerThread:
    """A server whose app sits behind `Prefixed`, with the CLI's uvicorn options; ready when it returns."""
    from rnnserve.cli import uvicorn_options

    running = ServerThread(settings)
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": 0, "log_level": "warning"}
    running.server = uvicorn.Server(uvicorn.Config(Prefixed(running.app, PREFIX, websockets), lifespan="on", **options))
    running.thread = threading.Thread(target=running.server.run, name="test-uvicorn-prefixed", daemon=True)
    running.start(wait_ready=False)
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=running.url + PREFIX) as client:
        while client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the prefixed test server is not ready")
            time.sleep(0.05)
    return running


def other_models(root: Path) -> Path:
    """A model repository of the service tests' models (tests/service/service_server.py writes it)."""
    import sys

    service_tests = str(Path(__file__).resolve().parents[1] / "service")
    if service_tests not in sys.path:
        sys.path.append(service_tests)
    from service_server import write_models

    return write_models(root)  # type: ignore[no-any-return]
