"""KServe's own Python SDK against /v2 (`kserve_checks.py`, in a fresh interpreter: see there why):
`kserve.InferenceRESTClient`'s health and model readiness, an infer with binary tensors and a sequence equal to one
stateless infer, and the metadata answers validated by KServe's pydantic data models of the protocol."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from app_harness import ServerThread

CHECKS = Path(__file__).with_name("kserve_checks.py")


@pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="the kserve package is not installed")
def test_kserves_rest_client_drives_v2(server: ServerThread) -> None:
    done = subprocess.run([sys.executable, str(CHECKS), server.url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": ok") == 3, done.stdout
