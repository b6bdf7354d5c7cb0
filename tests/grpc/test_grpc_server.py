"""The gRPC server's lifecycle and build: off unless `grpc_port` is set, on the port it is given, an error at
startup when that port is taken, and committed stubs that are what generate.sh makes from the .proto."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tritonclient.grpc as triton
from app_harness import ServerThread
from v2.v2_server import settings_for

from bench.redis_server import free_port
from rnnserve.grpc.protos import grpc_service_pb2_grpc
from rnnserve.grpc.server import grpc_server as make_grpc_server
from rnnserve.settings import Settings

PROTOS = Path(__file__).resolve().parents[2] / "service" / "rnnserve" / "grpc" / "protos"
GENERATED = ("grpc_service_pb2.py", "grpc_service_pb2.pyi", "grpc_service_pb2_grpc.py")


def test_grpc_is_off_by_default(models_dir: Path) -> None:
    assert Settings().grpc_port is None
    running = ServerThread(settings_for(models_dir)).start()
    try:
        assert not hasattr(running.app.state, "grpc_port")
    finally:
        running.stop()


def test_the_server_listens_on_the_port_it_is_given(models_dir: Path, grpc_server: str) -> None:
    port = free_port()
    running = ServerThread(settings_for(models_dir, grpc_port=port, grpc_server=grpc_server)).start()
    try:
        assert running.app.state.grpc_port == port
        with triton.InferenceServerClient(f"127.0.0.1:{port}") as client:
            assert client.is_server_ready()
    finally:
        running.stop()
    with triton.InferenceServerClient(f"127.0.0.1:{port}") as client, pytest.raises(Exception, match="UNAVAILABLE"):
        client.is_server_live(client_timeout=2)  # stopped with the app


async def test_a_port_in_use_is_an_error_at_startup(grpc_server: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(grpc_port=port, grpc_server=grpc_server)
        server = make_grpc_server(settings, service=SimpleNamespace(metrics=None))  # type: ignore[arg-type]
        with pytest.raises(OSError, match=f"cannot serve gRPC on 127.0.0.1:{port}"):
            await server.start()
        await server.stop()


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="needs grpcio-tools (the dev extra)")
def test_the_committed_stubs_are_what_generate_sh_makes(tmp_path: Path) -> None:
    from grpc_tools import grpc_version

    if grpc_version.VERSION != grpc_service_pb2_grpc.GRPC_GENERATED_VERSION:
        pytest.skip(f"the stubs were made by grpcio-tools {grpc_service_pb2_grpc.GRPC_GENERATED_VERSION}")
    for name in ("grpc_service.proto", "generate.sh"):
        shutil.copy2(PROTOS / name, tmp_path / name)
    subprocess.run(["sh", str(tmp_path / "generate.sh")], check=True, env={**os.environ, "PYTHON": sys.executable})
    for name in GENERATED:
        assert (tmp_path / name).read_text() == (PROTOS / name).read_text(), f"regenerate {name}: generate.sh"
