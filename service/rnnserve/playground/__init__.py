"""The browser playground: static HTML, CSS and JavaScript modules (no build step, no CDN) that `GET /` serves
(`rnnserve.api.playground`). The page lists the served models, opens sessions and streams steps over the WebSocket
in binary frames, plotting inputs, outputs and the hidden state as they arrive."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
"""index.html and the page's CSS and JavaScript modules."""
