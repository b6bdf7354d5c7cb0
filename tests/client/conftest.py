"""Client tests run `rnnserve.client` against a real server (`app_harness.ServerThread`: uvicorn on a free port in
a thread) serving the bundled models plus two built here: `lstm_state` (three outputs) and `bi` (Bidirectional,
which cannot serve sessions). `proxy` puts a TCP proxy between client and server that can cut a connection after
the server answered, or answer 503 itself."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_harness import ServerThread
from client_proxy import Proxy

from rnnserve.settings import Settings, bundled_models_dir

API_KEY = "client-test-key"


def write_models(root: Path) -> Path:
    from rnnserve.export.package import write_package
    from rnnserve.modeling import bidirectional, keras_model, layer_gru, layer_input, layer_lstm, set_random_seed

    bundled = bundled_models_dir()
    shutil.copytree(bundled / "forecaster", root / "forecaster")
    for name in ("chargru.keras", "chargru.vocab.json", "orbit.h5"):
        shutil.copy(bundled / name, root / name)
    set_random_seed(7)
    x = layer_input(shape=(None, 3), name="x")
    write_package(keras_model(x, list(layer_lstm(x, units=3, return_sequences=True, return_state=True)),
                              name="lstm_state").to_spec(), root / "lstm_state")  # fmt: skip
    y = bidirectional(x, layer_gru(units=2, return_sequences=True))
    write_package(keras_model(x, y, name="bi").to_spec(), root / "bi")
    return root


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("client-models"))


def settings(models: Path, **overrides: object) -> Settings:
    return Settings(models=models, max_body_bytes=1024 * 1024, executor_threads=2, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(models_dir: Path) -> Iterator[ServerThread]:
    running = ServerThread(settings(models_dir)).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def keyed_server(models_dir: Path) -> Iterator[ServerThread]:
    """A server that needs `Authorization: Bearer API_KEY`."""
    running = ServerThread(settings(models_dir, api_key=API_KEY)).start()
    yield running
    running.stop()


@pytest.fixture
def proxy(server: ServerThread) -> Iterator[Proxy]:
    running = Proxy(server.port).start()
    yield running
    running.stop()
