"""Every knob of the server in one pydantic-settings object.

Values come from keyword arguments (the CLI's flags), then `RNNSERVE_*` environment variables, then the defaults
below. Nothing reads the environment at import time: build `Settings()` where it is needed and pass it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import service

MiB = 1024 * 1024


def bundled_models_dir() -> Path:
    """The repository's own `models/` folder (the demo models), next to the `service` package."""
    return Path(service.__file__).resolve().parent.parent / "models"


STORE_SCHEMES = ("memory://", "redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RNNSERVE_",
        use_attribute_docstrings=True,
        extra="forbid",
        validate_default=True,
    )

    # ---- process -------------------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Interface to bind."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port to bind (0 picks a free one)."""
    workers: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes. More than one needs a shared session store (redis://)."""
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    """Log level of the server and uvicorn."""

    # ---- models --------------------------------------------------------------------------------------------------
    models: Path = Field(default_factory=bundled_models_dir)
    """Model repository: a folder of NAME.keras, NAME.h5 and exported NAME/ packages."""
    provider: Literal["cpu", "cuda", "auto"] = "cpu"
    """onnxruntime execution provider (auto = CUDA when available, else CPU)."""
    intra_op_threads: int = Field(default=1, ge=0)
    """onnxruntime threads inside one operator (0 = onnxruntime's default, all cores)."""
    inter_op_threads: int = Field(default=1, ge=0)
    """onnxruntime threads across operators (0 = onnxruntime's default)."""

    # ---- execution -----------------------------------------------------------------------------------------------
    executor: Literal["direct", "dynamic"] = "dynamic"
    """How model calls run: `direct` = one onnxruntime call per request on a bounded thread pool; `dynamic` =
    concurrent calls of one model merged into one (up to max_batch_size rows, waiting at most max_delay_ms)."""
    executor_threads: int = Field(default=4, ge=1, le=256)
    """Worker threads that run model calls (onnxruntime releases the GIL)."""
    max_batch_size: int = Field(default=128, ge=1)
    """Dynamic batching: most rows merged into one model call. On a CPU, onnxruntime takes ~1 us a row at 128 rows
    against ~20 us for one row alone, and a batch of 128 still runs in ~0.15 ms."""
    max_delay_ms: float = Field(default=2.0, ge=0)
    """Dynamic batching: longest wait for a batch to fill, in milliseconds."""

    # ---- sessions ------------------------------------------------------------------------------------------------
    store_url: str = "memory://"
    """Session store: memory:// (this process), redis://host:port/db (shared by replicas; rediss:// for TLS,
    redis://user:password@... for a password or ACL user) or redis+cluster://host:port,host:port/ (a Redis
    Cluster; rediss+cluster:// for TLS)."""
    store_cache: int = Field(default=10_000, ge=0)
    """Redis stores: sessions whose last record a replica keeps, to step them without reading Redis first (a stale
    copy is detected by the commit's compare-and-set and recomputed). 0 reads Redis on every step."""
    max_sessions: int = Field(default=10_000, ge=1)
    """Most live sessions; creating one more answers 429."""
    default_ttl_s: float = Field(default=600.0, gt=0)
    """Idle time after which a session expires, unless the session asks for its own ttl_s."""
    max_ttl_s: float = Field(default=86_400.0, gt=0)
    """Largest ttl_s a session may ask for."""

    # ---- request limits ------------------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=16 * MiB, ge=1024)
    """Largest request body (and WebSocket message) in bytes; larger answers 413."""
    max_timesteps: int = Field(default=100_000, ge=1)
    """Most timesteps in one request; more answers 413."""
    max_request_batch: int = Field(default=1024, ge=1)
    """Largest batch (rows) in one request or session."""

    # ---- security ------------------------------------------------------------------------------------------------
    api_key: SecretStr | None = None
    """When set, every /v1 and /v2 call needs `Authorization: Bearer <api_key>` (health and metrics stay open)."""

    @field_validator("store_url")
    @classmethod
    def _known_store(cls, url: str) -> str:
        if not url.startswith(STORE_SCHEMES):
            raise ValueError(
                f"store_url must be memory://, redis://host:port/db or redis+cluster://host:port,..., got {url!r}"
            )
        return url

    @field_validator("api_key")
    @classmethod
    def _non_empty_key(cls, key: SecretStr | None) -> SecretStr | None:
        return key if key is not None and key.get_secret_value() else None

    @model_validator(mode="after")
    def _ttl_bounds(self) -> Settings:
        if self.default_ttl_s > self.max_ttl_s:
            raise ValueError(f"default_ttl_s ({self.default_ttl_s}) exceeds max_ttl_s ({self.max_ttl_s})")
        return self

    @property
    def max_delay_s(self) -> float:
        return self.max_delay_ms / 1000.0
