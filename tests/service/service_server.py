"""What the service tests serve: a model repository of small seeded models exported as packages, and the settings
a test server runs with (`app_harness.ServerThread` runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service_models import MODELS

from rnnserve.settings import Settings

BROKEN_MODEL = "broken"


def write_models(root: Path, names: list[str] | None = None) -> Path:
    """Export the named test models (all by default) as packages into `root`, plus one unreadable entry."""
    from rnnserve.export.package import write_package

    root.mkdir(parents=True, exist_ok=True)
    for name in names or list(MODELS):
        write_package(MODELS[name](), root / name)
    (root / f"{BROKEN_MODEL}.keras").write_bytes(b"this is not a zip file")
    return root


def settings_for(models_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "models": models_dir,
        "max_body_bytes": 1024 * 1024,
        "max_timesteps": 1000,
        "max_sessions": 1000,
        "executor_threads": 2,
        "serve_partial": True,  # the repository has a broken entry on purpose
    }
    base.update(overrides)
    return Settings(**base)
