"""Schemathesis over /openapi.json against a real server: every check it has (`--checks all`), every phase
(examples, coverage, fuzzing, and the stateful phase that follows the OpenAPI links create -> step -> get ->
reset -> delete), the hot routes included, zero failures.

The server serves the bundled models behind an API key (so `ignored_auth` has something to check); the run is
time-boxed by `--max-examples` and a fixed seed (about 40 s on two cores). `tests/api/schemathesis.toml` says which
statuses a data-plane request may get for schema-valid data (see there)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_harness import ServerThread

from rnnserve.settings import Settings

pytest.importorskip("schemathesis")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
KEY = "schemathesis-key"
MAX_EXAMPLES = 10
SEED = 20261206


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    running = ServerThread(Settings(models=ROOT / "models", api_key=KEY)).start()
    yield running
    running.stop()


def test_schemathesis_finds_no_failure(
    server: ServerThread, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", f"{server.url}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {KEY}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "2",
        "--no-color",
        "--request-timeout", "30",
        "--generation-database", "none",  # each run alike, and nothing written into the repository
    ]  # fmt: skip
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated", output)
    summary = (
        f"schemathesis: {cases.group(1) if cases else '?'} test cases over "
        f"{tested.group(1) if tested else '?'} operations, every check, in {seconds:.0f} s (exit {run.returncode})"
    )
    with capsys.disabled():
        print(f"\n{summary}")
    assert run.returncode == 0, f"{summary}\n{output[-12000:]}"
    assert tested is not None and int(tested.group(1)) >= 20, output[-3000:]
    assert "Stateful" in output and "API Links" in output, output[-3000:]
