"""gRPC tests: a real server (`app_harness.ServerThread`: uvicorn in a thread, the gRPC server in the same event
loop) over the /v2 tests' small exported models, driven by unmodified `tritonclient.grpc` and, for what that
client cannot send (typed contents, uint64 ids beyond 2**63 - 1), by tritonclient's own generated stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from app_harness import ServerThread
from grpc_client import Grpc
from v2.v2_models import MODELS
from v2.v2_server import settings_for

from rnnserve.export.package import write_package

BROKEN = "broken"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grpc-models")
    for name, build in MODELS.items():
        write_package(build(), root / name)
    (root / f"{BROKEN}.keras").write_bytes(b"not a zip file")  # an entry that fails to load
    return root


def start_server(models_dir: Path, **overrides: Any) -> Grpc:
    values = {"grpc_port": 0, **overrides}  # 0: the gRPC server binds a free port and the app says which
    running = ServerThread(settings_for(models_dir, **values)).start()
    return Grpc(running, running.app.state.grpc_port)


@pytest.fixture(scope="session", params=["h2", "grpcio"])
def grpc_server(request: pytest.FixtureRequest) -> str:
    """What serves gRPC (the `grpc_server` setting): every gRPC test runs on both."""
    return str(request.param)


@pytest.fixture(scope="session")
def server(models_dir: Path, grpc_server: str) -> Iterator[Grpc]:
    running = start_server(models_dir, grpc_server=grpc_server)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: Grpc) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address) as tc:
        yield tc


@pytest.fixture
def make_server(models_dir: Path, grpc_server: str) -> Iterator[Callable[..., Grpc]]:
    """Start extra servers with other settings (on the same `grpc_server`); they stop after the test."""
    started: list[Grpc] = []

    def start(**overrides: Any) -> Grpc:
        running = start_server(models_dir, **{"grpc_server": grpc_server, **overrides})
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2025)
