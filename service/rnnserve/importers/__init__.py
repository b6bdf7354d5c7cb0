"""Import Keras model files into a `ModelSpec`, with json + zipfile + h5py only (no TensorFlow, no Keras).

    spec = load_spec("models/demo.keras")

`.keras` (Keras 3 archive) and `.h5`/`.hdf5` (legacy HDF5, written by Keras 3 or Keras 2 / tf.keras) are read;
every problem with a file is a `ModelFileError` (`UnsupportedLayer` for valid models rnnserve cannot compute).

An import has two stages: a container reader (`keras_zip` / `keras_h5`) copies the config text and the weights
out of the file into plain data, in an isolated child process by default (`isolation`: the zip and HDF5
parsers meet the untrusted bytes there, under a deadline and a memory cap); then `keras_config` normalises
the config and checks the weights into a `ModelSpec`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from rnnserve.errors import ModelFileError
from rnnserve.importers.isolation import Reader, run_isolated
from rnnserve.importers.keras_config import StoredModel, spec_from_config
from rnnserve.importers.keras_h5 import legacy_model, read_legacy_h5
from rnnserve.importers.keras_zip import archive_model, read_keras_archive
from rnnserve.importers.limits import Limits
from rnnserve.importers.rawfile import RawModel
from rnnserve.spec import ModelSpec

__all__ = ["MODEL_SUFFIXES", "Limits", "load_spec"]

Interpreter = Callable[[RawModel, Limits, str], StoredModel]
_FORMATS: dict[str, tuple[str, Reader, Interpreter]] = {
    ".keras": ("keras", read_keras_archive, archive_model),
    ".h5": ("h5", read_legacy_h5, legacy_model),
    ".hdf5": ("h5", read_legacy_h5, legacy_model),
}
MODEL_SUFFIXES = frozenset(_FORMATS)
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def load_spec(path: str | os.PathLike[str], *, name: str | None = None, limits: Limits | None = None) -> ModelSpec:
    """The normalised `ModelSpec` of a `.keras` or `.h5`/`.hdf5` Keras model file.

    `name` defaults to the file stem (a model repository names models by file name). `limits` caps what an
    untrusted file may make the importer read (defaults: `Limits()`).

    Raises:
        ModelFileError: the file is missing, of an unknown kind, unreadable, damaged, unsafe or inconsistent.
        UnsupportedLayer: the model is valid Keras but uses something rnnserve cannot compute exactly.
    """
    path = Path(path)
    limits = limits or Limits()
    file_format, reader, interpret = _format_of(path)
    raw = run_isolated(reader, path, limits) if limits.isolate else reader(path, limits)
    stored = interpret(raw, limits, path.name)
    return spec_from_config(
        stored.model_config,
        stored.weights,
        name=name or path.stem,
        keras_version=stored.keras_version,
        source={
            "path": str(path),
            "format": file_format,
            "keras_version": stored.keras_version,
            "sha256": _sha256(path),
        },
    )


def _format_of(path: Path) -> tuple[str, Reader, Interpreter]:
    if path.is_dir() or path.name in _SAVED_MODEL_FILES:
        if path.name in _SAVED_MODEL_FILES or any((path / f).is_file() for f in _SAVED_MODEL_FILES):
            raise ModelFileError(
                f"{path} is a TensorFlow SavedModel, which rnnserve does not read (it needs TensorFlow). Re-save "
                'the model as a Keras file: in Python model.save("m.keras") (or model.save("m.h5")); in R '
                'save_model(model, "m.keras") (or save_model_hdf5(model, "m.h5") with the keras package)'
            )
        raise ModelFileError(f"{path} is a directory, not a .keras or .h5 model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    entry = _FORMATS.get(path.suffix.lower())
    if entry is None:
        raise ModelFileError(
            f"{path}: unknown model file type {path.suffix!r}; rnnserve reads .keras (Keras 3) and .h5/.hdf5 "
            "(legacy Keras HDF5) files"
        )
    _check_magic(path, entry[0])
    return entry


def _check_magic(path: Path, file_format: str) -> None:
    """Name the mix-up when a file's content does not match its suffix."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the file: {exc}") from None
    if file_format == "keras" and head.startswith(_HDF5_MAGIC):
        raise ModelFileError(f"{path} is an HDF5 file, not a .keras zip archive: rename it to .h5")
    if file_format == "h5" and head.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{path} is a zip archive (a .keras file?), not an HDF5 file: rename it to .keras")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
