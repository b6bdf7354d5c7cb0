"""`rnnserve inspect` shows the signature the server serves: for every bundled entry (a .keras file, a .h5 file and
an exported package), its inputs, outputs and states (shapes included) are those of GET /v1/models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_harness import ServerThread

from rnnserve.cli import describe
from rnnserve.runtime.repository import scan_entries
from rnnserve.settings import Settings

MODELS = Path(__file__).resolve().parents[1] / "models"
SIGNATURE_KEYS = ("inputs", "outputs", "states", "stateful", "batch_size", "time_major", "bidirectional")


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, dict]]:
    server = ServerThread(Settings(models=MODELS)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            yield {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    finally:
        server.stop()


@pytest.mark.parametrize("name", sorted(scan_entries(MODELS)))
def test_inspect_shows_the_served_signature(name: str, served: dict[str, dict]) -> None:
    path = scan_entries(MODELS)[name]
    described = describe(path)["signature"]
    model = served[name]
    assert model["status"] == "ready"
    for key in SIGNATURE_KEYS:
        assert described[key] == model[key], (path.name, key)
    assert all(output["shape"] for output in described["outputs"]), "no output shape is left empty"


def test_the_bundled_entries_are_of_every_kind() -> None:
    suffixes = {p.suffix or "package" for p in scan_entries(MODELS).values()}
    assert suffixes == {".keras", ".h5", "package"}
