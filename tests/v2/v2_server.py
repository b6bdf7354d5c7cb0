"""The settings a /v2 test server runs with (`app_harness.ServerThread` runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnserve.settings import Settings


def settings_for(models_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "models": models_dir,
        "max_body_bytes": 256 * 1024,
        "executor_threads": 2,
        "serve_partial": True,
    }
    values.update(overrides)
    return Settings(**values)
