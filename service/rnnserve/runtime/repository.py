"""The model repository: one entry per model in a folder, loaded off the event loop.

Entries (the entry's name is the model's name): `NAME.keras`, `NAME.h5` / `NAME.hdf5`, or a folder `NAME/`
holding an exported package (`manifest.json` + `model.onnx`). Names starting with `_` or `.` are skipped, and
so is every other file (READMEs, build scripts, vocabularies). A model that fails to load is reported with its
error and the others still serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rnnserve.errors import ModelFileError, ModelNotFound, ModelNotReady, RnnServeError
from rnnserve.importers import MODEL_SUFFIXES, load_spec
from rnnserve.runtime.ort_model import OrtModel, RuntimeOptions
from rnnserve.runtime.runner import Runner
from rnnserve.signature import ModelSignature

log = logging.getLogger(__name__)

PACKAGE_MANIFEST = "manifest.json"

Status = Literal["loading", "ready", "failed"]


@dataclass
class LoadedModel:
    name: str
    source: str
    status: Status = "loading"
    signature: ModelSignature | None = None
    runner: Runner | None = None
    error: str | None = None
    load_seconds: float | None = None
    provider: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def scan_entries(root: Path) -> dict[str, Path]:
    """Model name -> path for every model entry directly in `root` that may be served (see `scan_repository`)."""
    return scan_repository(root)[0]


def scan_repository(root: Path, *, follow_links_out: bool = False) -> tuple[dict[str, Path], dict[str, str]]:
    """(model name -> path of every entry directly in `root` to load, name -> why an entry is refused).

    Refused, and reported as failed models while the rest are served: entries that share a name (`m.keras` and
    `m.h5`: both, since neither is the obvious one), and, unless `follow_links_out`, a symbolic link (or a path
    through one) that leads out of `root`."""
    if not root.is_dir():
        raise ModelFileError(f"model repository {str(root)!r} is not a folder")
    real_root = root.resolve()
    found: dict[str, list[Path]] = {}
    refused: dict[str, str] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        name = path.name if path.is_dir() else path.stem
        if path.is_dir():
            if not ((path / PACKAGE_MANIFEST).is_file() or (path / "saved_model.pb").is_file()):
                continue
        elif path.suffix.lower() not in MODEL_SUFFIXES:
            continue
        if not follow_links_out and not path.resolve().is_relative_to(real_root):
            refused[name] = (
                f"entry {path.name!r} is a link that leads out of the model folder (not followed unless "
                "--follow-model-links-out)"
            )
            continue
        found.setdefault(name, []).append(path)
    entries: dict[str, Path] = {}
    for name, paths in found.items():
        if len(paths) > 1:
            refused[name] = (
                f"{len(paths)} entries are named {name!r} ({', '.join(p.name for p in paths)}): rename or remove all "
                "but one"
            )
        elif name not in refused:
            entries[name] = paths[0]
    return entries, refused


def load_runner(path: Path, name: str, options: RuntimeOptions) -> OrtModel:
    """Import or read one entry and build its onnxruntime model."""
    if path.is_dir() and (path / PACKAGE_MANIFEST).is_file():
        from rnnserve.export.package import read_package

        package = read_package(path)
        return OrtModel(package.spec, options, model_path=package.model_path, signature=package.signature)
    return OrtModel(load_spec(path, name=name), options)


class ModelRepository:
    def __init__(
        self,
        root: Path,
        options: RuntimeOptions | None = None,
        on_loaded: Callable[[LoadedModel], None] | None = None,
        *,
        follow_links_out: bool = False,
    ) -> None:
        self.root = Path(root)
        self.follow_links_out = follow_links_out
        self.options = options or RuntimeOptions()
        self._on_loaded = on_loaded
        self._models: dict[str, LoadedModel] = {}
        self._scanned = False

    async def load_all(self) -> None:
        """Load every entry, one at a time in a worker thread (loading is CPU-bound and rare)."""
        entries, refused = scan_repository(self.root, follow_links_out=self.follow_links_out)
        self._models = {name: LoadedModel(name=name, source=str(path)) for name, path in entries.items()}
        for name, reason in refused.items():
            self._models[name] = LoadedModel(name=name, source=name, status="failed", error=reason)  # logged by app
        self._scanned = True
        for name, path in entries.items():
            await asyncio.to_thread(self._load_one, self._models[name], path)

    def _load_one(self, model: LoadedModel, path: Path) -> None:
        started = time.perf_counter()
        try:
            runner = load_runner(path, model.name, self.options)
        except RnnServeError as exc:
            model.status, model.error = "failed", f"{type(exc).__name__}: {exc.detail}"
            log.error("model %r (%s) failed to load: %s", model.name, path, model.error)
        except Exception as exc:  # a broken file must not take the other models down
            model.status, model.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("model %r (%s) failed to load", model.name, path)
        else:
            model.runner, model.signature, model.status = runner, runner.signature, "ready"
            model.provider = runner.active_provider
            log.info("model %r loaded from %s on %s", model.name, path, model.provider)
        model.load_seconds = time.perf_counter() - started
        if self._on_loaded is not None:
            self._on_loaded(model)

    def add(self, name: str, runner: Runner, source: str = "in process") -> LoadedModel:
        """Serve a model built in this process (e.g. the numpy reference of a spec) beside the folder's entries."""
        model = LoadedModel(name=name, source=source, status="ready", signature=runner.signature, runner=runner)
        self._models[name] = model
        if self._on_loaded is not None:
            self._on_loaded(model)
        return model

    @property
    def ready(self) -> bool:
        """True once every entry has been tried and none is still loading (failed models are reported, not awaited)."""
        return self._scanned and all(m.status != "loading" for m in self._models.values())

    def list(self) -> list[LoadedModel]:
        return list(self._models.values())

    def get(self, name: str) -> LoadedModel:
        """A ready model; `ModelNotFound` for an unknown name, `ModelNotReady` while loading or after a failure."""
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"no model named {name!r}; known: {sorted(self._models)}")
        if model.status != "ready":
            reason = model.error or "it is still loading"
            raise ModelNotReady(f"model {name!r} is {model.status}: {reason}")
        return model
