"""`rnnserve serve | export | inspect`: argv -> Settings -> uvicorn, or -> importer/exporter. Nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service import __version__
from service.errors import RnnServeError
from service.settings import Settings

log = logging.getLogger("service")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# flag dest -> Settings field, for the serve flags that override RNNSERVE_* variables
SERVE_FLAGS = {
    "models": "models",
    "host": "host",
    "port": "port",
    "store": "store_url",
    "store_cache": "store_cache",
    "workers": "workers",
    "log_level": "log_level",
    "provider": "provider",
    "threads": "executor_threads",
    "executor": "executor",
    "max_batch_size": "max_batch_size",
    "max_delay_ms": "max_delay_ms",
    "max_sessions": "max_sessions",
    "session_ttl": "default_ttl_s",
    "max_body_bytes": "max_body_bytes",
    "api_key": "api_key",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnserve", description="Serve Keras recurrent models as stateful streams.")
    parser.add_argument("--version", action="version", version=f"rnnserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (flags override RNNSERVE_* variables)")
    serve.add_argument("--models", type=Path, help="model repository folder (default: the bundled models/)")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.add_argument(
        "--store", help="session store URL: memory:// (default), redis://host:port/db or redis+cluster://host:port,..."
    )
    serve.add_argument("--store-cache", type=int, help="Redis stores: sessions a replica keeps to step without a read")
    serve.add_argument("--workers", type=int, help="worker processes (more than one needs --store redis://...)")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug", "trace"])
    serve.add_argument("--provider", choices=["cpu", "cuda", "auto"], help="onnxruntime execution provider")
    serve.add_argument("--threads", type=int, help="worker threads running model calls")
    serve.add_argument(
        "--executor", choices=["direct", "dynamic"], help="dynamic batching across sessions (default) or one call each"
    )
    serve.add_argument("--max-batch-size", type=int, help="dynamic batching: most rows in one model call")
    serve.add_argument("--max-delay-ms", type=float, help="dynamic batching: longest wait for a batch to fill")
    serve.add_argument("--max-sessions", type=int, help="most live sessions (429 beyond)")
    serve.add_argument("--session-ttl", type=float, help="default idle seconds before a session expires")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body (413 beyond)")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 and /v2")

    export = commands.add_parser("export", help="convert a .keras/.h5 file into an ONNX model package")
    export.add_argument("src", type=Path, help="a .keras or .h5 file")
    export.add_argument("--out", type=Path, required=True, help="package folder to write")
    export.add_argument("--name", help="model name (default: the file's stem)")
    export.add_argument(
        "--unroll",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="unroll the time loop (fixed length) or keep a Scan; default: as the Keras layers say",
    )

    inspect = commands.add_parser("inspect", help="print the signature of a .keras/.h5 file or a package as JSON")
    inspect.add_argument("path", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "export":
            return export(args)
        return inspect(args)
    except RnnServeError as exc:
        print(f"rnnserve {args.command}: {type(exc).__name__}: {exc.detail}", file=sys.stderr)
        return 1


# ---- serve --------------------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    overrides = {field: getattr(args, dest) for dest, field in SERVE_FLAGS.items() if getattr(args, dest) is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"rnnserve serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    problem = check_serve_settings(settings)
    if problem:
        print(f"rnnserve serve: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    run_server(settings, overrides)
    return 0


def check_serve_settings(settings: Settings) -> str | None:
    """A reason not to start, or None."""
    if not Path(settings.models).is_dir():
        return f"model repository {str(settings.models)!r} is not a folder (use --models DIR)"
    if settings.workers > 1 and settings.store_url.startswith("memory://"):
        return "--workers > 1 needs a shared session store: add --store redis://host:port/db"
    return None


def configure_logging(level: str) -> None:
    numeric = logging.DEBUG if level == "trace" else getattr(logging, level.upper())
    logging.basicConfig(level=numeric, format=LOG_FORMAT)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the service runs under uvicorn (the tests' servers use the same options)."""
    from service.api.protocol import CoalescingHttpToolsProtocol

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "ws_max_size": settings.max_body_bytes,
        "loop": "auto",  # uvloop when installed
        "http": CoalescingHttpToolsProtocol,  # httptools, one write per response
        "proxy_headers": False,
        "server_header": False,
        # uvicorn formats every access-log record before the logger drops it: off unless it would be printed
        "access_log": settings.log_level in ("info", "debug", "trace"),
    }


GC_THRESHOLD = 20_000
"""Container allocations (net of frees) between young-generation collections; Python's default is 700. A step
allocates a few dozen objects that reference counting frees at once, but at 700 the collector still ran about
every ten requests and took 5% of a step's CPU; at 20,000 it runs only when garbage really accumulates."""


def tune_gc() -> None:
    """Collect young objects less often (what startup loads is frozen out of the collector's sight once the models
    are loaded, in `service.app`). Process-wide, so set by the process that serves, not by `create_app`."""
    import gc

    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def run_server(settings: Settings, overrides: dict[str, Any]) -> None:
    import uvicorn

    common = uvicorn_options(settings)
    tune_gc()
    if settings.workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    # Worker processes build their own app from the environment: hand the flags down as RNNSERVE_* variables.
    for field, value in overrides.items():
        os.environ[f"RNNSERVE_{field.upper()}"] = str(value)
    from service.metrics import shared_metrics_dir

    with shared_metrics_dir():  # so that /metrics on any worker counts what every worker did
        uvicorn.run("service.app:app_from_env", factory=True, workers=settings.workers, **common)


# ---- export / inspect ---------------------------------------------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    from service.export.package import write_package
    from service.importers import load_spec

    spec = load_spec(args.src, name=args.name) if args.name else load_spec(args.src)
    options = {} if args.unroll is None else {"unroll": args.unroll}
    write_package(spec, args.out, **options)
    print(f"wrote {args.out} (model {spec.name!r} from {args.src})")
    return 0


def inspect(args: argparse.Namespace) -> int:
    print(json.dumps(describe(args.path), indent=2))
    return 0


def describe(path: Path) -> dict[str, Any]:
    """The signature (and, for a package, its manifest) of a model file or package."""
    from service.runtime.repository import PACKAGE_MANIFEST

    if path.is_dir() and (path / PACKAGE_MANIFEST).is_file():
        from service.export.package import read_package

        package = read_package(path)
        return {"kind": "package", "signature": package.signature.to_dict(), "manifest": dict(package.manifest)}
    from service.importers import load_spec
    from service.runtime.signature import signature_from_spec

    spec = load_spec(path)
    return {
        "kind": "keras",
        "keras_version": spec.keras_version,
        "signature": signature_from_spec(spec).to_dict(),
        "layers": [{"name": layer.name, "class_name": layer.class_name} for layer in spec.layers],
    }
