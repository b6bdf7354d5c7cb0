"""Metrics shared between worker processes (`--workers N`): any worker's /metrics counts what every worker did.

prometheus_client picks its multiprocess mode when it is first imported, from `PROMETHEUS_MULTIPROC_DIR`, so each
"worker" here is a Python process of its own started with that variable, as uvicorn starts its workers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from rnnserve.metrics import MULTIPROC_DIR, Metrics, shared_dir, shared_metrics_dir

WORKER = textwrap.dedent(
    """
    import sys
    from rnnserve.metrics import Metrics
    steps, ready, close = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "close"
    metrics = Metrics()
    assert metrics.shared
    for _ in range(steps):
        metrics.observe("/v1/sessions/{session_id}/step", "POST", 200, 0.002)
        metrics.tenant_request("alice", "/v1/sessions/{session_id}/step", "POST", 200)
        metrics.step_done("m", 2)
    metrics.model_call("m", steps, steps, 0.001, [0.0005] * steps)
    metrics.stage("m", "encode", 0.00002)
    metrics.store_round_trip("commit")
    metrics.model_ready.labels("m").set(ready)
    metrics.sessions_active.set(5)
    metrics.sessions_created.inc(steps)
    metrics.predictions.labels("m").inc()
    metrics.model_load_seconds.labels("m").set(0.5)
    if close:
        metrics.close()
    """
)
RENDER = "from rnnserve.metrics import Metrics; import sys; sys.stdout.buffer.write(Metrics().render())"


def python(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def sample(text: str, name: str, labels: str = "") -> float:
    found = re.findall(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert len(found) == 1, (name, labels, text)
    return float(found[0])


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def test_any_worker_reports_the_sum_of_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_DIR: str(tmp_path)}
    python(WORKER, "3", "1", "stay", env=env)  # a worker still running (its files stay)
    python(WORKER, "4", "1", "close", env=env)  # a worker that shut down (its live gauges leave)
    text = python(RENDER, env=env)
    step = '{method="POST",route="/v1/sessions/{session_id}/step",status="200"}'
    assert sample(text, "rnnserve_requests_total", step) == 7
    by_tenant = '{method="POST",route="/v1/sessions/{session_id}/step",status_class="2xx",tenant="alice"}'
    assert sample(text, "rnnserve_tenant_requests_total", by_tenant) == 7
    assert sample(text, "rnnserve_session_steps_total", '{model="m"}') == 7
    assert sample(text, "rnnserve_session_timesteps_total", '{model="m"}') == 14
    assert sample(text, "rnnserve_model_calls_total", '{model="m"}') == 2
    assert sample(text, "rnnserve_batch_rows_count", '{model="m"}') == 2
    assert sample(text, "rnnserve_sessions_created_total") == 7
    assert sample(text, "rnnserve_sessions_active") == 5  # the store's count, not 5 per worker
    assert sample(text, "rnnserve_model_ready", '{model="m"}') == 1

    python(WORKER, "0", "0", "stay", env=env)  # a worker still loading the model: not ready everywhere yet
    assert sample(python(RENDER, env=env), "rnnserve_model_ready", '{model="m"}') == 0


def test_shared_metrics_have_the_single_process_names(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_DIR: str(tmp_path)}
    python(WORKER, "1", "1", "stay", env=env)
    alone = Metrics()
    assert not alone.shared
    alone.observe("/v1/sessions/{session_id}/step", "POST", 200, 0.002)
    alone.tenant_request("alice", "/v1/sessions/{session_id}/step", "POST", 200)
    alone.step_done("m", 2)
    alone.model_call("m", 1, 1, 0.001, [0.0005])
    alone.stage("m", "encode", 0.00002)
    alone.store_round_trip("commit")
    alone.model_ready.labels("m").set(1)
    alone.predictions.labels("m").inc()
    alone.model_load_seconds.labels("m").set(0.5)
    shared = families(python(RENDER, env=env))
    single = families(alone.render().decode())
    assert shared == single - {name for name in single if name.endswith("_created")}


def test_serve_gives_its_workers_a_fresh_folder_and_removes_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    with shared_metrics_dir() as folder:
        assert shared_dir() == folder and Path(folder).is_dir()
        (Path(folder) / "counter_1.db").write_bytes(b"")
    assert shared_dir() is None and not Path(folder).exists()

    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_99.db").write_bytes(b"from an earlier run")
    monkeypatch.setenv(MULTIPROC_DIR, str(given))
    with shared_metrics_dir() as folder:
        assert folder == str(given) and not list(given.glob("*.db"))  # an earlier run's counts do not carry over
    assert shared_dir() == str(given) and given.is_dir()
