"""`rnnserve serve | export | inspect`: argv -> Settings -> uvicorn, or -> importer/exporter. Nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rnnserve import __version__
from rnnserve.errors import RnnServeError
from rnnserve.settings import (
    ALIASES,
    ENV_PREFIX,
    NOT_SETTINGS,
    OTHER_FLAGS,
    DeprecatedSettingWarning,
    Settings,
    SettingsError,
    canonical_values,
    closest_setting,
    description,
    flag,
    load_settings,
    sections,
    settings_environment,
    shown_default,
    variable,
)

log = logging.getLogger("rnnserve")

PRECEDENCE = (
    "Every setting is a flag --x-y, a variable RNNSERVE_X_Y and a key x_y of the --config file (TOML). "
    "Flags win over RNNSERVE_* variables, which win over the config file, which wins over the defaults."
)

METAVARS = {"_url": "URL", "_ms": "MS", "_s": "SECONDS", "_bytes": "BYTES", "_key": "KEY", "_threads": "N"}


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `Settings` field (`--x-y`, help from its docstring; `OTHER_FLAGS` give a few more names), grouped
    by its section, and the old names (`ALIASES`) as hidden flags of their own."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML file of settings (x_y = value)")
    for section, names in sections().items():
        group = parser.add_argument_group(f"{section} settings")
        for name in names:
            old = [flag(alias) for alias, field in ALIASES.items() if field == name]
            was = f" Was {', '.join(old)} (deprecated)." if old else ""
            text = f"{description(name)} Default: {shown_default(name)}. Env: {variable(name)}.{was}"
            others = [flag(other) for other in OTHER_FLAGS.get(name, ())]
            group.add_argument(flag(name), *others, dest=name, help=text.replace("%", "%%"), **argument_kind(name))
    for alias, name in ALIASES.items():
        parser.add_argument(flag(alias), dest=alias_dest(alias), help=argparse.SUPPRESS, **argument_kind(name))


def alias_dest(alias: str) -> str:
    return f"deprecated_{alias}"


def argument_kind(name: str) -> dict[str, Any]:
    """argparse's type, choices and metavar for a field (pydantic still validates what comes through)."""
    annotation = Settings.model_fields[name].annotation
    options = (
        [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation)
        in (
            types.UnionType,
            typing.Union,
        )
        else [annotation]
    )
    kind = options[0] if len(options) == 1 else str
    if typing.get_origin(kind) is typing.Literal:
        return {"choices": [str(choice) for choice in typing.get_args(kind)]}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    metavar = next((m for suffix, m in METAVARS.items() if name.endswith(suffix)), None)
    if kind is int:
        return {"type": int, "metavar": metavar or "N"}
    if kind is float:
        return {"type": float, "metavar": metavar or "NUMBER"}
    if kind is Path:
        return {"type": Path, "metavar": metavar or "PATH"}
    if typing.get_origin(kind) is tuple:
        return {"metavar": metavar or "A,B,..."}  # comma-separated: the field splits it
    return {"metavar": metavar or "TEXT"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnserve", description="Serve Keras recurrent models as stateful streams.")
    parser.add_argument("--version", action="version", version=f"rnnserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(  # no abbreviations: one name per setting
        "serve", help="run the HTTP server", description="Run the HTTP server.", epilog=PRECEDENCE, allow_abbrev=False
    )
    add_settings_flags(serve)

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
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        options = [arg.split("=")[0] for arg in extra if arg.startswith("--")]
        hint = f"; did you mean {flag(closest_setting(options[0]))}?" if args.command == "serve" and options else ""
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecatedSettingWarning)
        try:
            settings = settings_from(args)
        except SettingsError as exc:
            print(f"rnnserve serve: {exc}", file=sys.stderr)
            return 2
        except ValidationError as exc:
            print(f"rnnserve serve: invalid settings:\n{explain(exc)}", file=sys.stderr)
            return 2
        finally:
            for warning in caught:
                print(f"rnnserve serve: warning: {warning.message}", file=sys.stderr)
    problem = check_serve_settings(settings)
    if problem:
        print(f"rnnserve serve: {problem}", file=sys.stderr)
        return 2
    if getattr(args, "api_key", None) is not None:
        print(
            "rnnserve serve: warning: --api-key on the command line shows in `ps` to every user of this machine; "
            "use RNNSERVE_API_KEY or --api-keys-file FILE",
            file=sys.stderr,
        )
    configure_logging(settings)
    run_server(settings)
    return 0


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags (old names warn) > RNNSERVE_* variables > the --config file > defaults."""
    given = {flag(name): getattr(args, name) for name in Settings.model_fields}
    given |= {flag(alias): getattr(args, alias_dest(alias)) for alias in ALIASES}
    flags = canonical_values({k: v for k, v in given.items() if v is not None}, flag, "command line")
    return load_settings(flags, args.config)


def explain(exc: ValidationError) -> str:
    """One line per invalid setting, named as flag / variable."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        where = f"{flag(name)} / {variable(name)}" if name in Settings.model_fields else "settings"
        got = "" if repr(error["input"]) in error["msg"] else f" (got {error['input']!r})"
        lines.append(f"  {where}: {error['msg']}{got}" if name else f"  {error['msg']}")
    return "\n".join(lines)


def check_serve_settings(settings: Settings) -> str | None:
    """A reason not to start, or None."""
    if not Path(settings.models).is_dir():
        return f"model repository {str(settings.models)!r} is not a folder (use --models DIR)"
    if settings.workers > 1 and settings.store_url.startswith("memory://"):
        return "--workers > 1 needs a shared session store: add --store-url redis://host:port/db"
    from rnnserve.tenants import TenantsFileError, tenants_for

    try:
        tenants_for(settings)
    except TenantsFileError as exc:
        return str(exc)
    return None


def configure_logging(settings: Settings | str) -> None:
    """The root logger as the settings say (`rnnserve.logging_setup`); a bare level keeps the text format."""
    from rnnserve.logging_setup import configure_logging as configure

    configure(settings if isinstance(settings, Settings) else Settings(log_level=settings))  # type: ignore[arg-type]


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the service runs under uvicorn (the tests' servers use the same options)."""
    from rnnserve.api.protocol import protocol_for
    from rnnserve.logging_setup import access_log_on, uvicorn_log_config

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "ws_max_size": settings.max_body_bytes,
        "loop": "auto",  # uvloop when installed
        "http": protocol_for(settings),  # httptools, one write per response, request deadline, header limits
        "proxy_headers": False,
        "server_header": False,
        # a line per request only with access_log = full (the default is a summary a minute: logging_setup)
        "access_log": access_log_on(settings),
        "log_config": uvicorn_log_config(settings),
    }


GC_THRESHOLD = 20_000
"""Container allocations (net of frees) between young-generation collections; Python's default is 700. A step
allocates a few dozen objects that reference counting frees at once, but at 700 the collector still ran about
every ten requests and took 5% of a step's CPU; at 20,000 it runs only when garbage really accumulates."""


def tune_gc() -> None:
    """Collect young objects less often (what startup loads is frozen out of the collector's sight once the models
    are loaded, in `rnnserve.app`). Process-wide, so set by the process that serves, not by `create_app`."""
    import gc

    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def run_server(settings: Settings) -> None:
    import uvicorn

    common = uvicorn_options(settings)
    tune_gc()
    if settings.workers == 1:
        from rnnserve.app import create_app
        from rnnserve.logging_setup import start_access_summary

        app = create_app(settings)
        start_access_summary(app.serving.metrics.registry, settings)  # type: ignore[attr-defined]
        uvicorn.run(app, **common)
        return
    # Worker processes build their own app from the environment: hand every setting down as its RNNSERVE_* variable
    # (flags and config file included), and no old name, so that they read exactly these settings.
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX) and name not in NOT_SETTINGS]:
        del os.environ[name]
    os.environ.update(settings_environment(settings))
    from rnnserve.metrics import shared_metrics_dir

    with shared_metrics_dir():  # so that /metrics on any worker counts what every worker did
        uvicorn.run("rnnserve.app:app_from_env", factory=True, workers=settings.workers, **common)


# ---- export / inspect ---------------------------------------------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    from rnnserve.export.package import write_package
    from rnnserve.importers import load_spec

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
    from rnnserve.runtime.repository import PACKAGE_MANIFEST

    if path.is_dir() and (path / PACKAGE_MANIFEST).is_file():
        from rnnserve.export.package import read_package

        package = read_package(path)
        return {"kind": "package", "signature": package.signature.to_dict(), "manifest": dict(package.manifest)}
    from rnnserve.export.convert import to_onnx
    from rnnserve.importers import load_spec

    spec = load_spec(path)
    _, signature = to_onnx(spec)  # the signature the server serves: output shapes from the exported graph
    return {
        "kind": "keras",
        "keras_version": spec.keras_version,
        "signature": signature.to_dict(),
        "layers": [{"name": layer.name, "class_name": layer.class_name} for layer in spec.layers],
    }
