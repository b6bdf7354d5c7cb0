"""Every knob of the server in one pydantic-settings object, and the one rule that names it everywhere.

A field `x_y` is the flag `--x-y` of `rnnserve serve`, the environment variable `RNNSERVE_X_Y` and the key `x_y` of
a config file (`--config FILE`, TOML). Precedence: flags > `RNNSERVE_*` variables > config file > the defaults
below. A few old names still work as `ALIASES` (each use warns, naming the new one); any other `RNNSERVE_*` variable
or config key is an error that names the closest setting. The flags, `rnnserve serve --help` and the README's
table are all made from this class: a new field is a new flag.

Nothing reads the environment at import time: build `Settings()` (or `load_settings`) where it is needed and pass
it on.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

import rnnserve

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MiB = 1024 * 1024

ENV_PREFIX = "RNNSERVE_"


def bundled_models_dir() -> Path:
    """The repository's own `models/` folder (the demo models), beside the `service/` folder that holds the package."""
    return Path(rnnserve.__file__).resolve().parents[2] / "models"


_ORIGIN = re.compile(
    r"[a-z][a-z0-9+.-]*://"  # scheme
    r"((\*\.)?[a-z0-9_~-]+(\.[a-z0-9_~-]+)*|\[[0-9a-f:.]+\])"  # host, *.domain or [IPv6]
    r"(:[0-9]{1,5})?",  # port
    re.IGNORECASE,
)
"""An origin as browsers send it (`scheme://host[:port]`, IPv6 in brackets), or with `*.` for a domain's subdomains."""
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP method or header name (RFC 9110's token; `*` is one)."""

STORE_SCHEMES = ("memory://", "redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RNNSERVE_",
        use_attribute_docstrings=True,
        extra="forbid",
        validate_default=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # keyword arguments (flags, and config-file values from `load_settings`), then RNNSERVE_* variables read
        # by the one rule (aliases warn, unknown names are errors); no .env or secrets folder
        return init_settings, EnvironmentSource(settings_cls)

    # ---- process -------------------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Interface to bind."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port to bind (0 picks a free one)."""
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    """Also serve the Open Inference Protocol over gRPC (KServe v2, Triton's ModelStreamInfer) on this TCP port of
    the same host (0 picks a free one). Unset: off, so a deployment opens one port unless it asks for two."""
    grpc_server: Literal["h2", "grpcio"] = "h2"
    """What serves gRPC: `h2`, HTTP/2 on the server's own event loop (the h2 library; about a third of grpcio's CPU
    per stream message), or `grpcio`, grpcio's asyncio server. Both serve the same methods with the same answers."""
    workers: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes. More than one needs a shared session store (redis://)."""

    # ---- logging -------------------------------------------------------------------------------------------------
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    """Log level of the server and uvicorn."""
    log_format: Literal["text", "json"] = "text"
    """Log lines as text (`time level logger: message`) or as one JSON object each (`time`, `level`, `logger`,
    `message`, and fields), for a log collector. Either way a session id shows only as a tag (#, then the first 8
    hex digits of its SHA-256)."""
    access_log: Literal["summary", "full", "off"] = "summary"
    """Access log: `summary` = one line per route every access_log_interval_s (requests, statuses, p50 and p99
    latency), nothing per request; `full` = a line per HTTP request (uvicorn's, written off the event loop; costs
    more than 10% of a one-timestep step's throughput); `off` = neither. Lines are logged at INFO."""
    access_log_interval_s: float = Field(default=60.0, gt=0)
    """Seconds between the access log's summary lines (access_log = summary)."""

    # ---- models --------------------------------------------------------------------------------------------------
    models: Path = Field(default_factory=bundled_models_dir, json_schema_extra={"shown_default": "the bundled models/"})
    """Model repository: a folder of NAME.keras, NAME.h5 and exported NAME/ packages."""
    follow_model_links_out: bool = False
    """Serve entries of the model folder that are symbolic links leading out of it (refused by default, as a
    failed model)."""
    serve_partial: bool = False
    """Report ready (/readyz 200) although some models failed to load (the others are served either way)."""
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
    """Dynamic batching: most rows merged into one model call. On a CPU a row costs onnxruntime far less in a batch
    of 128 than alone, and such a batch still runs in well under a millisecond (bench/README.md, case g)."""
    max_delay_ms: float = Field(default=2.0, ge=0)
    """Dynamic batching: longest wait for a batch to fill, in milliseconds."""

    # ---- sessions ------------------------------------------------------------------------------------------------
    store_url: str = "memory://"
    """Session store: memory:// (this process), redis://host:port/db (shared by replicas; rediss:// for TLS,
    redis://user:password@... for a password or ACL user) or redis+cluster://host:port,host:port/ (a Redis
    Cluster; rediss+cluster:// for TLS)."""
    store_cache_mb: float = Field(default=64.0, ge=0)
    """Redis stores: memory (MiB) for the copies of the sessions a replica served last, which it steps without
    reading Redis first (a stale copy is caught by the commit's compare-and-set and the step recomputed from a fresh
    read). 0 reads Redis on every step."""
    max_sessions: int = Field(default=10_000, ge=1)
    """Most live sessions; creating one more answers 429."""
    max_state_bytes: int = Field(default=512 * MiB, ge=1024)
    """Most bytes of recurrent state held by all sessions together (a session's: batch x state units x 4); creating
    one more past it answers 429. Counted by the store as sessions come and go (with Redis, atomically in Redis)."""
    default_ttl_s: float = Field(default=600.0, gt=0)
    """Idle time after which a session expires, unless the session asks for its own ttl_s."""
    max_ttl_s: float = Field(default=86_400.0, gt=0)
    """Largest ttl_s a session may ask for."""
    max_retry_reply_bytes: int = Field(default=1 * MiB, ge=0)
    """Largest step reply kept with its session to answer a retry (a step with `seq`) again; a larger reply is not
    kept (its digest is), and a retry of that step answers 409 reply-not-kept."""

    # ---- limits --------------------------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=16 * MiB, ge=1024)
    """Largest request body (and WebSocket message) in bytes; larger answers 413."""
    max_timesteps: int = Field(default=100_000, ge=1)
    """Most timesteps in one request; more answers 413."""
    max_request_batch: int = Field(default=1024, ge=1)
    """Largest batch (rows) in one request or session."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """A request's headers and body must arrive within this many seconds of its first byte (a new connection must
    start a request within it too), else 408 and the connection is closed (slow or stalled clients)."""
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest request line and headers, in bytes; larger answers 431 and closes the connection."""
    max_headers: int = Field(default=100, ge=8)
    """Most headers in one request; more answers 431 and closes the connection."""
    ws_idle_timeout_s: float = Field(default=300.0, gt=0)
    """A WebSocket stream that receives no message for this many seconds is closed (1001, going away)."""
    max_work: int = Field(default=100_000, ge=1)
    """Most rows x timesteps in one call (a predict, a step, a /v2 infer); more answers 413 naming the figure. On
    the bundled models a call at this limit peaks under 300 MiB of server memory."""
    max_reply_bytes: int = Field(default=32 * MiB, ge=1024)
    """Largest reply, in bytes, computed from the model's output shapes before the call runs (JSON counts 16 bytes
    a float32 value, raw bytes 4); larger answers 413 naming the figure."""
    large_work: int = Field(default=8192, ge=1)
    """Calls of more rows x timesteps than this run on threads of their own (large_work_threads), outside the
    executor, so that a long predict does not hold other sessions' steps behind it."""
    large_work_threads: int = Field(default=2, ge=1, le=64)
    """Threads for large calls (see large_work); more large calls at once wait for one."""

    # ---- security ------------------------------------------------------------------------------------------------
    api_key: SecretStr | None = None
    """When set, every /v1 and /v2 call needs `Authorization: Bearer <api_key>` (health and metrics stay open): one
    tenant, `default`. Prefer RNNSERVE_API_KEY or api_keys_file: a flag shows in `ps`."""
    api_keys_file: Path | None = None
    """Tenants: a file of `TENANT:KEY` (or `TENANT:sha256:HEX`) lines and optional `quota` lines (`rnnserve.tenants`,
    docs/API.md). Each session and /v2 sequence belongs to the tenant that created it; other tenants get 404."""
    tenant_max_sessions: int = Field(default=1000, ge=1)
    """Most live sessions (and /v2 sequences) of one tenant, unless the keys file sets its quota; more answers 429."""
    tenant_max_state_bytes: int = Field(default=256 * MiB, ge=1024)
    """Most bytes of recurrent state held by one tenant's sessions, unless the keys file sets its quota; more
    answers 429."""
    cors_allow_origins: tuple[str, ...] = Field(default=(), json_schema_extra={"shown_default": "none (CORS off)"})
    """CORS: the origins (`scheme://host[:port]`, comma-separated) whose web pages may call the API from a browser;
    `https://*.example.com` for every subdomain of one, `*` for any origin. Empty (the default): CORS is off, no
    Access-Control-* header is sent and OPTIONS answers 405."""
    cors_allow_methods: tuple[str, ...] = ("GET", "POST", "DELETE")
    """CORS: the methods a page may use (a preflight asking for another answers 400); `*` for any."""
    cors_allow_headers: tuple[str, ...] = (
        "Authorization",
        "Content-Type",
        "Content-Encoding",
        "X-Shape",
        "X-Seq",
        "X-Return-State",
        "X-Time-Major",
        "Inference-Header-Content-Length",
    )
    """CORS: the request headers a page may send besides the safelisted ones (Accept, Accept-Language,
    Content-Language, Content-Type); a preflight asking for another answers 400. `*` for any."""
    cors_expose_headers: tuple[str, ...] = (
        "Retry-After",
        "WWW-Authenticate",
        "X-Step",
        "X-Tensors",
        "Inference-Header-Content-Length",
    )
    """CORS: the response headers a page's script may read besides the safelisted ones
    (Access-Control-Expose-Headers)."""
    cors_allow_credentials: bool = False
    """CORS: let pages send cookies or TLS client certificates (Access-Control-Allow-Credentials), only with listed
    origins, not `*`. The API key is a header a page sets itself: it does not need this."""
    cors_max_age_s: int = Field(default=600, ge=0, le=86_400)
    """CORS: seconds a browser may keep a preflight's answer (Access-Control-Max-Age)."""

    @field_validator("store_url")
    @classmethod
    def _known_store(cls, url: str) -> str:
        if not url.startswith(STORE_SCHEMES):
            raise ValueError(
                f"store_url must be memory://, redis://host:port/db or redis+cluster://host:port,..., got {url!r}"
            )
        return url

    @field_validator("cors_allow_origins", "cors_allow_methods", "cors_allow_headers", "cors_expose_headers",
                     mode="before")  # fmt: skip
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """A list as text (a flag, a variable): comma-separated, blanks ignored."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in origins and len(origins) > 1:
            raise ValueError("`*` allows every origin: list no other origin with it")
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port] (or scheme://*.domain), without a path or "
                    "a trailing /"
                )
        return tuple(origin.lower() for origin in origins)

    @field_validator("cors_allow_methods", "cors_allow_headers", "cors_expose_headers")
    @classmethod
    def _tokens(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a method or header name")
        if "*" in names and len(names) > 1:
            raise ValueError("`*` allows every name: list no other with it")
        return names

    @field_validator("cors_allow_methods")
    @classmethod
    def _upper_case_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(method.upper() for method in methods)

    @field_validator("api_key")
    @classmethod
    def _non_empty_key(cls, key: SecretStr | None) -> SecretStr | None:
        return key if key is not None and key.get_secret_value() else None

    @model_validator(mode="after")
    def _ttl_bounds(self) -> Settings:
        if self.default_ttl_s > self.max_ttl_s:
            raise ValueError(f"default_ttl_s ({self.default_ttl_s}) exceeds max_ttl_s ({self.max_ttl_s})")
        return self

    @model_validator(mode="after")
    def _credentials_need_origins(self) -> Settings:
        if self.cors_allow_credentials and self.cors_allow_origins == ("*",):
            raise ValueError("cors_allow_credentials needs listed origins in cors_allow_origins, not `*`")
        return self

    @property
    def auth_required(self) -> bool:
        """Whether requests need an API key (api_key or api_keys_file)."""
        return self.api_key is not None or self.api_keys_file is not None

    @property
    def max_delay_s(self) -> float:
        return self.max_delay_ms / 1000.0


# ---- the one rule: names, sections, aliases -----------------------------------------------------------------------

SECTIONS: dict[str, str] = {
    "host": "process",
    "log_level": "logging",
    "models": "models",
    "executor": "execution",
    "store_url": "sessions",
    "max_body_bytes": "limits",
    "api_key": "security",
}
"""The first field of each section of `Settings` (its `# ---- name` comments) -> the section's name. A field belongs
to the section above it, so a new field lands in its section of `--help` and of the README's table by itself."""

ALIASES: dict[str, str] = {
    "store": "store_url",
    "session_ttl": "default_ttl_s",
    "threads": "executor_threads",
}
"""Old names -> fields. Each is still read as a flag (`--store`), a variable (`RNNSERVE_STORE`) and a config key
(`store`), with a `DeprecatedSettingWarning` naming the new one."""

OTHER_FLAGS: dict[str, tuple[str, ...]] = {
    "api_keys_file": ("api_keys",),
}
"""Fields -> more names of their flag, on the command line only and without a warning: `--api-keys FILE`, as the
tenants' issue names it, is `--api-keys-file FILE`."""

NOT_SETTINGS = frozenset(
    {
        "RNNSERVE_TEST_PROVIDER",  # tests/graph_provider.py: the provider of the parity and export tests
        "RNNSERVE_CHROMIUM",  # tests/playground: the browser
        "RNNSERVE_SCREENSHOT_DIR",  # tests/playground: where the screenshots go
        "RNNSERVE_SKIP_DOCKER",  # deploy/check.sh
        "RNNSERVE_DOCKER_DIR",  # deploy/check.sh
        "RNNSERVE_REDIS_PORT",  # deploy/docker-compose.yml: host ports of Redis and the two replicas
        "RNNSERVE_PORT_A",
        "RNNSERVE_PORT_B",
    }
)
"""`RNNSERVE_*` variables that the project's tests and scripts read, not the server. The server ignores them (a test
checks that every `RNNSERVE_*` name in the repository is a setting, an alias or one of these)."""


class SettingsError(ValueError):
    """A setting the server does not know, an old and a new name that disagree, or an unreadable config file."""


class DeprecatedSettingWarning(UserWarning):
    """An old name (`ALIASES`) was used; the message names the new one."""


def flag(name: str) -> str:
    """`store_url` -> `--store-url`."""
    return "--" + name.replace("_", "-")


def variable(name: str) -> str:
    """`store_url` -> `RNNSERVE_STORE_URL`."""
    return ENV_PREFIX + name.upper()


def config_key(name: str) -> str:
    """`store_url` -> `store_url`."""
    return name


def sections() -> dict[str, list[str]]:
    """Section name -> its fields, in the order `Settings` declares them."""
    grouped: dict[str, list[str]] = {}
    section = ""
    for name in Settings.model_fields:
        section = SECTIONS.get(name, section)
        if not section:
            raise RuntimeError(f"Settings.{name} comes before the first section of SECTIONS")
        grouped.setdefault(section, []).append(name)
    return grouped


def closest_setting(name: str) -> str:
    """The field whose name (or old name) is most like `name`, given in any spelling (`--x-y`, `RNNSERVE_X_Y`)."""
    key = name.lower().lstrip("-").replace("-", "_")
    key = key.removeprefix(ENV_PREFIX.lower())
    known = {field: field for field in Settings.model_fields} | ALIASES
    return known[difflib.get_close_matches(key, list(known), n=1, cutoff=0.0)[0]]


def canonical_values(
    given: Mapping[str, Any], spell: Callable[[str], str], source: str, *, warn: bool = True
) -> dict[str, Any]:
    """`given` (names spelled by `spell`, old names included) -> {field: value}.

    An old name warns; an unknown name, or an old and a new name with different values, raises `SettingsError`.
    """
    fields = {spell(name): name for name in Settings.model_fields}
    old = {spell(alias): name for alias, name in ALIASES.items()}
    values: dict[str, Any] = {}
    named: dict[str, str] = {}
    for name, value in given.items():
        field = fields.get(name) or old.get(name)
        if field is None:
            hint = " (settings are top-level keys, not tables)" if isinstance(value, dict) else ""
            raise SettingsError(f"{source}: unknown setting {name}{hint}; did you mean {spell(closest_setting(name))}?")
        if name in old and warn:
            warnings.warn(f"{source}: {name} is deprecated, use {spell(field)}", DeprecatedSettingWarning, stacklevel=2)
        if field in values and values[field] != value:
            first, second = sorted((named[field], name), key=lambda n: n == spell(field))  # the new name last
            raise SettingsError(f"{source}: {first} and {second} both set {field}, to different values; keep {second}")
        values[field] = value
        named.setdefault(field, name)
    return values


def environment_values(environ: Mapping[str, str], *, warn: bool = True) -> dict[str, str]:
    """The `RNNSERVE_*` variables of `environ` as {field: text}, except `NOT_SETTINGS`."""
    given = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX) and k not in NOT_SETTINGS}
    return canonical_values(given, variable, "environment", warn=warn)


class EnvironmentSource(PydanticBaseSettingsSource):
    """`RNNSERVE_*` variables by the one rule (pydantic validates the text as it would the field's value)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        return environment_values(os.environ)


def read_config(path: Path) -> dict[str, Any]:
    """A TOML config file's settings as {field: value}: top-level keys named as the fields (`store_url = "..."`)."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: not valid TOML: {exc}") from None
    return canonical_values(data, config_key, f"config file {path}")


def load_settings(flags: Mapping[str, Any] | None = None, config: Path | None = None) -> Settings:
    """Settings from `flags` ({field: value}), then `RNNSERVE_*` variables, then the config file, then defaults."""
    from_file = read_config(config) if config is not None else {}
    in_environment = environment_values(os.environ, warn=False)  # the Settings source warns, once
    below_environment = {name: value for name, value in from_file.items() if name not in in_environment}
    return Settings(**{**below_environment, **(flags or {})})


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as `RNNSERVE_*` variables that `Settings()` reads back as the same values (for worker processes)."""
    out: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, tuple):
            value = ",".join(value)
        if value is not None:
            out[variable(name)] = str(value)
    return out


def shown_default(name: str) -> str:
    """A field's default as `--help` and the README show it."""
    info = Settings.model_fields[name]
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
        return str(extra["shown_default"])
    default = info.get_default(call_default_factory=True)
    if isinstance(default, tuple):
        return ",".join(default)
    return "unset" if default is None else str(default)


def _described_default(name: str) -> bool:
    """True when the default is words (unset, or a `shown_default`), not a value to type."""
    info = Settings.model_fields[name]
    return shown_default(name) == "unset" or (
        isinstance(info.json_schema_extra, dict) and "shown_default" in info.json_schema_extra
    )


def description(name: str) -> str:
    """A field's docstring on one line."""
    return " ".join((Settings.model_fields[name].description or "").split())


def markdown_table() -> str:
    """The README's settings table (`python -m rnnserve.settings` prints it)."""
    lines = ["| section | flag | variable | default | meaning |", "|---|---|---|---|---|"]
    for section, names in sections().items():
        for name in names:
            meaning = description(name).replace("|", "\\|")
            others = OTHER_FLAGS.get(name, ())
            if others:
                meaning += " Also " + ", ".join(f"`{flag(other)}`" for other in others) + "."
            default = shown_default(name) if _described_default(name) else f"`{shown_default(name)}`"
            lines.append(f"| {section} | `{flag(name)}` | `{variable(name)}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
