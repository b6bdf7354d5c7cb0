"""The benchmark suite: every scenario against `rnnserve serve` and its baselines, in alternating rounds.

    python -m bench.run_all [--rounds 3] [--seconds 3] [--json results.json] [--skip-memory]

It builds the bench model (SimpleRNN 128 units over 32 features, input "x", last output only, seeded) into a
temporary model folder and starts, each pinned to CPU 0 (`taskset -c 0`): `rnnserve serve` with dynamic batching,
the same with direct execution (batching off), and the minimal FastAPI + orjson app (bench/minimal_app.py). The
load generator (this process) runs pinned to CPU 1. Each round starts the servers afresh and runs every case once,
in an order that rotates from round to round, so that a noisy, shared machine slows every case alike; ratios are
taken inside each round (between neighbouring measurements) and the median over rounds is reported.

Cases:
  a      HTTP JSON step, 1 timestep, 64 sessions, the server's default settings (INFO logs, access log summary)
  a-off  the same with --log-level warning --access-log off; a-prod with JSON logs (production); a-full with a
         log line per request (--access-log full)
  m64, m1024  WS /v1/streams: 64 or 1024 sessions on one connection, one binary frame of one-timestep records
         for every session in flight (p50/p99 are a frame's); m64x4, m1024x4 the same sessions on 4 connections
  a-redis  the same on the Redis store (a redis-server started here, AOF fsync every second, on the load core)
  b      the same over the WebSocket stream (JSON text messages); b-bin with binary frames
  c      HTTP binary tensors (application/octet-stream), 64 sessions
  d      HTTP JSON step, 256 sessions, dynamic batching (model calls per step read from /metrics)
  d-off  the same with batching off (direct execution)
  d-redis  (d) on the Redis store (Redis round trips per model call read from /metrics)
  e      whole-sequence predict, B=32, T=100 (JSON; e-bin with binary tensors)
  f      the minimal FastAPI + orjson endpoint parsing the same body as (a) and answering a constant
  g      onnxruntime alone on the one-step graph, in process (the compute limit), batch 1 and 64
  h      a stateless client that resends its whole history (10, 100, 1000 timesteps) for one new step, vs a
         session step at the same history
  mem    RSS per idle session in the memory store (bench/bench_memory.py, 100k sessions)

Besides throughput and latency, each case reports the server's CPU time per request (from /proc), a figure that
other load on the machine disturbs much less than throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_model import MODEL_NAME, write_bench_model
from bench.loadgen import HttpConnection, Result, drive, pin_to_cpu, split_url, use_uvloop
from bench.scenarios import build_clients
from bench.servers import REPO, RedisProcess, Server, minimal_app, pinned, rnnserve

SERVER_CPU = 0
PRODUCTION = ("--log-format", "json")
"""The settings a production deployment changes from the defaults that a benchmark sees: JSON log lines (the
access log stays the default per-minute summary)."""
LOADGEN_CPU = 1
HISTORIES = (10, 100, 1000)


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    server: str  # "dynamic" | "direct" | "minimal"
    scenario: str
    clients: int  # connections (each with one session, or `per_connection` on the multiplexed stream)
    history: int = 10
    per_connection: int = 1


CASES: tuple[Case, ...] = (
    Case("a", "HTTP JSON step, 64 sessions", "dynamic", "step-json", 64),
    Case("f", "minimal FastAPI + orjson (ceiling)", "minimal", "ceiling", 64),
    Case("a-off", "(a), access log off (--log-level warning)", "quiet", "step-json", 64),
    Case("a-prod", "(a), production settings (JSON logs)", "prod", "step-json", 64),
    Case("a-full", "(a), a log line per request (--access-log full)", "full", "step-json", 64),
    Case("m64", "WS /v1/streams, 64 sessions on 1 connection", "dynamic", "multiplexed", 1, per_connection=64),
    Case("m1024", "WS /v1/streams, 1024 sessions on 1 connection", "dynamic", "multiplexed", 1, per_connection=1024),
    Case("m64x4", "WS /v1/streams, 64 sessions on 4 connections", "dynamic", "multiplexed", 4, per_connection=16),
    Case("m1024x4", "WS /v1/streams, 1024 sessions on 4 connections", "dynamic", "multiplexed", 4, per_connection=256),
    Case("a-redis", "HTTP JSON step, 64 sessions, Redis store", "redis", "step-json", 64),
    Case("d-redis", "HTTP JSON step, 256 sessions, Redis store", "redis", "step-json", 256),
    Case("b", "WebSocket stream (JSON), 64 sessions", "dynamic", "stream", 64),
    Case("b-bin", "WebSocket stream (binary), 64 sessions", "dynamic", "stream-binary", 64),
    Case("c", "HTTP binary step, 64 sessions", "dynamic", "step-binary", 64),
    Case("d", "HTTP JSON step, 256 sessions, batching on", "dynamic", "step-json", 256),
    Case("d-off", "HTTP JSON step, 256 sessions, batching off", "direct", "step-json", 256),
    Case("e", "predict B=32 T=100 (timesteps/s)", "dynamic", "predict", 4),
    Case("e-bin", "predict B=32 T=100, binary (timesteps/s)", "dynamic", "predict-binary", 4),
    *(Case(f"h{h}", f"stateless, resend history {h}", "dynamic", "history", 16, h) for h in HISTORIES),
    *(Case(f"s{h}", f"session step at history {h}", "dynamic", "step-at-history", 64, h) for h in HISTORIES),
)


@dataclass
class Sample:
    """One case in one round."""

    result: Result
    server_cpu_s: float  # server CPU time inside the measuring window
    model_calls: float | None = None  # from /metrics, over the whole drive (warmup included)
    steps: float | None = None
    store_round_trips: float | None = None

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_s / self.result.requests if self.result.requests else float("nan")

    @property
    def cpu_us_per_step(self) -> float:
        return 1e6 * self.server_cpu_s / self.result.steps if self.result.steps else float("nan")


@dataclass
class Figures:
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    compute: list[dict[str, dict[str, float]]] = field(default_factory=list)
    memory: dict[str, float] | None = None

    def add(self, key: str, sample: Sample) -> None:
        self.samples.setdefault(key, []).append(sample)

    def throughput(self, key: str) -> float:
        """Median over rounds of steps per second."""
        return statistics.median(s.result.steps_per_s for s in self.samples[key])

    def cpu_us(self, key: str) -> float:
        return statistics.median(s.cpu_us_per_request for s in self.samples[key])

    def cpu_us_step(self, key: str) -> float:
        return statistics.median(s.cpu_us_per_step for s in self.samples[key])

    def latencies(self, key: str) -> Result:
        runs = [s.result for s in self.samples[key]]
        return Result(key, 0, 0, 0.0, [x for r in runs for x in r.latencies])

    def round_ratios(self, top: str, bottom: str, *, cpu: bool = False, per_step: bool = False) -> list[float]:
        """Per round, top/bottom throughput (or bottom/top server CPU per request, or per step)."""
        pairs = zip(self.samples[top], self.samples[bottom], strict=False)
        if per_step:
            return [b.cpu_us_per_step / t.cpu_us_per_step for t, b in pairs]
        if cpu:
            return [b.cpu_us_per_request / t.cpu_us_per_request for t, b in pairs]
        return [t.result.steps_per_s / b.result.steps_per_s for t, b in pairs]

    def ratio(self, top: str, bottom: str, *, cpu: bool = False, per_step: bool = False) -> float:
        """Median over rounds of `round_ratios`."""
        return statistics.median(self.round_ratios(top, bottom, cpu=cpu, per_step=per_step))

    def best_ratio(self, top: str, bottom: str) -> float:
        """top/bottom throughput of each case's least disturbed round (its fastest). On a shared machine noise only
        ever slows a round down, so the best rounds estimate the undisturbed costs; the targets use the median."""
        best = {key: max(s.result.steps_per_s for s in self.samples[key]) for key in (top, bottom)}
        return best[top] / best[bottom]

    def calls_per_step(self, key: str) -> float:
        calls = sum(s.model_calls or 0 for s in self.samples[key])
        steps = sum(s.steps or 0 for s in self.samples[key])
        return calls / steps if steps else float("nan")

    def round_trips_per_call(self, key: str) -> float:
        trips = sum(s.store_round_trips or 0 for s in self.samples[key])
        calls = sum(s.model_calls or 0 for s in self.samples[key])
        return trips / calls if calls else float("nan")


# ---- running cases ----------------------------------------------------------------------------------------------


_SAMPLE = re.compile(r'^(rnnserve_model_calls_total|rnnserve_session_steps_total)\{model="([^"]+)"\} (\S+)$', re.M)
_ROUND_TRIPS = re.compile(r'^rnnserve_store_round_trips_total\{op="[^"]+"\} (\S+)$', re.M)


async def model_counters(server: Server) -> tuple[float, float, float]:
    """(model calls, session steps) of the bench model so far, and the session store's round trips, from /metrics."""
    conn = HttpConnection(*split_url(server.url))
    await conn.open()
    try:
        status, payload, _ = await conn.request("GET", "/metrics")
    finally:
        await conn.close()
    text = payload.decode()
    values = {name: float(value) for name, model, value in _SAMPLE.findall(text) if model == MODEL_NAME}
    trips = sum(float(value) for value in _ROUND_TRIPS.findall(text))
    return values.get("rnnserve_model_calls_total", 0.0), values.get("rnnserve_session_steps_total", 0.0), trips


async def run_case(case: Case, server: Server, seconds: float, warmup: float) -> Sample:
    clients, close = await build_clients(
        case.scenario, server.url, MODEL_NAME, case.clients, case.history, case.per_connection
    )
    counted = case.server != "minimal"
    before = await model_counters(server) if counted else (0.0, 0.0, 0.0)
    cpu: dict[str, float] = {}

    def window(mark: str) -> None:
        cpu[mark] = server.cpu_seconds()

    try:
        result = await drive(case.key, clients, seconds, warmup, on_window=window)
    finally:
        await close()
    sample = Sample(result, cpu.get("stop", 0.0) - cpu.get("start", 0.0))
    if counted:
        after = await model_counters(server)
        sample.model_calls, sample.steps, sample.store_round_trips = (a - b for a, b in zip(after, before, strict=True))
    return sample


def compute_limit(models: Path) -> dict[str, dict[str, float]]:
    command = pinned([sys.executable, "-m", "bench.compute", str(models), "--seconds", "1"], SERVER_CPU)
    return json.loads(subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout)  # type: ignore[no-any-return]


def memory_figure(sessions: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.bench_memory", "--sessions", str(sessions)]
    return json.loads(subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout)  # type: ignore[no-any-return]


def round_order(cases: Sequence[Case], round_index: int) -> list[Case]:
    """Rotate the cases each round (and reverse every other round), keeping (a, f) neighbours."""
    order = list(cases)
    shift = (2 * round_index) % len(order)
    order = order[shift:] + order[:shift]
    return order[::-1] if round_index % 2 else order


async def run_rounds(start: Callable[[], dict[str, Server]], cases: Sequence[Case], rounds: int, seconds: float,
                     warmup: float, models: Path, figures: Figures, log: Callable[[str], None]) -> None:  # fmt: skip
    """Every round on freshly started servers, so that no process's luck (memory layout, a busy neighbour at
    start) weighs on every round."""
    for index in range(rounds):
        log(f"-- round {index + 1}/{rounds}")
        servers = start()
        try:
            for case in round_order(cases, index):
                sample = await run_case(case, servers[case.server], seconds, warmup)
                figures.add(case.key, sample)
                log(f"{case.key:<6} {sample.result.line()}  server {sample.cpu_us_per_request:6.1f} us CPU/req")
        finally:
            for server in servers.values():
                server.stop()
        figures.compute.append(compute_limit(models))


# ---- report -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    what: str
    value: float
    target: str
    ok: bool
    detail: str = ""


def _spread(fig: Figures, top: str, bottom: str) -> str:
    values = fig.round_ratios(top, bottom)
    low, high = min(values), max(values)
    return f"rounds {low:.2f}-{high:.2f}, best rounds {fig.best_ratio(top, bottom):.3f}"


def checks(fig: Figures) -> list[Check]:
    """The targets whose cases were measured."""
    have = fig.samples.keys()
    found: list[Check] = []
    if {"a", "f"} <= have:
        ratio, per_cpu = fig.ratio("a", "f"), fig.ratio("a", "f", cpu=True)
        found.append(Check("(a) / (f) throughput", ratio, ">= 1.2", ratio >= 1.2, _spread(fig, "a", "f")))
        found.append(Check("(a) / (f) per server CPU second", per_cpu, "(>= 1.2)", per_cpu >= 1.2))
    if {"a", "a-off"} <= have:
        ratio = fig.ratio("a", "a-off")
        found.append(Check("(a) defaults / (a-off) access log off", ratio, ">= 0.9", ratio >= 0.9,
                           _spread(fig, "a", "a-off")))  # fmt: skip
        per_cpu = fig.ratio("a", "a-off", cpu=True)
        found.append(Check("(a) / (a-off) per server CPU second", per_cpu, "(>= 0.9)", per_cpu >= 0.9))
    if {"a-prod", "a-off"} <= have:
        ratio = fig.ratio("a-prod", "a-off")
        found.append(Check("(a-prod) JSON logs / (a-off)", ratio, "(>= 0.9)", ratio >= 0.9,
                           _spread(fig, "a-prod", "a-off")))  # fmt: skip
    if {"a-full", "a-off"} <= have:
        ratio = fig.ratio("a-full", "a-off")
        found.append(Check("(a-full) line per request / (a-off)", ratio, "(for the record)", True,
                           _spread(fig, "a-full", "a-off")))  # fmt: skip
        per_cpu = fig.ratio("a-full", "a-off", cpu=True)
        found.append(Check("(a-full) / (a-off) per server CPU second", per_cpu, "(for the record)", True))
    for key in ("m64", "m1024", "m64x4", "m1024x4"):
        if {key, "f"} <= have:
            ratio = fig.ratio(key, "f")
            target = ">= 5" if key == "m1024" else "(>= 5)"
            found.append(Check(f"({key}) / (f) throughput", ratio, target, ratio >= 5, _spread(fig, key, "f")))
            per_cpu = fig.ratio(key, "f", per_step=True)
            found.append(Check(f"({key}) / (f) per server CPU second", per_cpu, "(>= 5)", per_cpu >= 5))
        if {key, "a"} <= have:
            ratio = fig.ratio(key, "a")
            found.append(Check(f"({key}) / (a) throughput", ratio, "(for the record)", True, _spread(fig, key, "a")))
    if "m1024" in have:
        calls = fig.calls_per_step("m1024")
        found.append(Check("(m1024) model calls per step", calls, "<= 1/64", calls <= 1 / 64))
    if {"a", "b"} <= have:
        ratio = fig.ratio("b", "a")
        found.append(Check("(b) / (a) throughput", ratio, ">= 3", ratio >= 3, _spread(fig, "b", "a")))
    if "d" in have:
        calls = fig.calls_per_step("d")
        found.append(Check("(d) model calls per step", calls, "<= 1/16 = 0.0625", calls <= 1 / 16))
    if {"a", "a-redis"} <= have:
        ratio, per_cpu = fig.ratio("a-redis", "a"), fig.ratio("a-redis", "a", cpu=True)
        found.append(Check("(a-redis) / (a) throughput", ratio, ">= 0.8", ratio >= 0.8, _spread(fig, "a-redis", "a")))
        found.append(Check("(a-redis) / (a) per server CPU second", per_cpu, "(>= 0.8)", per_cpu >= 0.8))
    if "d-redis" in have:
        trips = fig.round_trips_per_call("d-redis")
        found.append(Check("(d-redis) Redis round trips per model call", trips, "<= 2", trips <= 2))
    if {"d", "d-off"} <= have:
        ratio = fig.ratio("d", "d-off")
        found.append(Check("(d) / (d-off) throughput", ratio, ">= 2", ratio >= 2, _spread(fig, "d", "d-off")))
    if "a" in have:
        a = fig.latencies("a")
        spread = a.percentile(0.99) / a.percentile(0.5)
        found.append(Check("(a) p99 / p50", spread, "<= 3", spread <= 3))
    if {"s10", "s1000"} <= have:
        cost = fig.ratio("s10", "s1000")  # throughput at 10 over throughput at 1000 = cost at 1000 over cost at 10
        found.append(Check("(h) session step cost, history 1000 / 10", cost, "within 10% of 1", abs(cost - 1) <= 0.1,
                           _spread(fig, "s10", "s1000")))  # fmt: skip
    if fig.memory is not None:
        per = fig.memory["bytes_per_idle_session"]
        found.append(Check("idle session in the memory store (bytes)", per, "<= 1024", per <= 1024))
    return found


def table(fig: Figures, cases: Sequence[Case]) -> str:
    lines = [
        "| case | what | steps/s | p50 ms | p99 ms | server CPU us/req | server CPU us/step |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        if case.key not in fig.samples:
            continue
        lat = fig.latencies(case.key)
        lines.append(
            f"| {case.key} | {case.label} | {fig.throughput(case.key):,.0f} | {lat.percentile(0.5) * 1e3:.2f} | "
            f"{lat.percentile(0.99) * 1e3:.2f} | {fig.cpu_us(case.key):.1f} | {fig.cpu_us_step(case.key):.1f} |"
        )
    for batch in ("1", "64"):
        values = [c[batch] for c in fig.compute if batch in c]
        if values:
            rate = statistics.median(v["steps_per_s"] for v in values)
            call = statistics.median(v["us_per_call"] for v in values)
            lines.append(f"| g | onnxruntime alone, batch {batch} ({call:.1f} us/call) | {rate:,.0f} | | | |")
    if fig.memory is not None:
        m = fig.memory
        lines.append(
            f"| mem | memory store, {m['sessions']:,.0f} sessions of {m['units']:.0f} units | "
            f"{m['bytes_per_idle_session']:.0f} B idle, {m['bytes_per_session_after_a_step']:.0f} B after a step, "
            f"{m['bytes_per_session_after_a_step_with_seq']:.0f} B after a step with seq (cached reply) | | | |"
        )
    return "\n".join(lines)


def report(fig: Figures, cases: Sequence[Case]) -> str:
    out = ["", "== figures (median over rounds)", table(fig, cases), "", "== ratios (median over rounds) and targets"]
    for check in checks(fig):
        line = f"{'PASS' if check.ok else 'MISS'}  {check.what:<42} {check.value:8.3f}   target {check.target}"
        out.append(f"{line:<90} ({check.detail})" if check.detail else line)
    return "\n".join(out)


def dump(fig: Figures, path: Path) -> None:
    data = {
        key: [
            {"requests": s.result.requests, "steps_per_s": s.result.steps_per_s, "p50": s.result.percentile(0.5),
             "p99": s.result.percentile(0.99), "errors": s.result.errors, "cpu_us_per_request": s.cpu_us_per_request,
             "model_calls": s.model_calls, "steps": s.steps, "store_round_trips": s.store_round_trips}
            for s in samples
        ]
        for key, samples in fig.samples.items()
    }  # fmt: skip
    data["compute"] = fig.compute  # type: ignore[assignment]
    data["memory"] = fig.memory  # type: ignore[assignment]
    path.write_text(json.dumps(data, indent=1))


# ---- main -------------------------------------------------------------------------------------------------------


def start_servers(models: Path, env: dict[str, str], needed: set[str], redis_url: str | None) -> dict[str, Server]:
    """The servers the cases need, started (and ready) one after the other, all pinned to the server core."""
    makers: dict[str, Callable[[], Server]] = {
        "dynamic": lambda: rnnserve("rnnserve (dynamic batching)", models, SERVER_CPU, executor="dynamic",
                                    extra_env=env),
        "redis": lambda: rnnserve("rnnserve (Redis store)", models, SERVER_CPU, executor="dynamic", extra_env=env,
                                  store=redis_url),
        "direct": lambda: rnnserve("rnnserve (direct)", models, SERVER_CPU, executor="direct", extra_env=env),
        "quiet": lambda: rnnserve("rnnserve (log level warning)", models, SERVER_CPU, executor="dynamic",
                                  extra_env=env, args=["--log-level", "warning", "--access-log", "off"]),
        "prod": lambda: rnnserve("rnnserve (production logging)", models, SERVER_CPU, executor="dynamic",
                                 extra_env=env, args=PRODUCTION),
        "full": lambda: rnnserve("rnnserve (access log full)", models, SERVER_CPU, executor="dynamic",
                                 extra_env=env, args=["--access-log", "full"]),
        "minimal": lambda: minimal_app(SERVER_CPU),
    }  # fmt: skip
    servers: dict[str, Server] = {}
    try:
        for name in sorted(needed):
            servers[name] = makers[name]().start()
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per case and round")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--cases", help="comma-separated case keys (default: all)")
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-sessions", type=int, default=100_000)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the rnnserve servers")
    parser.add_argument(
        "--redis-appendfsync", default="everysec", choices=["everysec", "always", "no"], help="the Redis cases' AOF"
    )
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.cases is None or c.key in args.cases.split(",")]
    env = dict(item.split("=", 1) for item in args.env)
    figures = Figures()

    def log(line: str) -> None:
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="rnnserve-bench-") as tmp:
        models = Path(tmp)
        write_bench_model(models)
        needed = {case.server for case in cases}
        # Redis shares the load generator's core: the rnnserve server's core does only rnnserve's work.
        redis = None
        if "redis" in needed:
            redis = RedisProcess(Path(tmp) / "redis", LOADGEN_CPU, args.redis_appendfsync).start()
        pin_to_cpu(LOADGEN_CPU)
        use_uvloop()
        try:
            redis_url = redis.url if redis else None
            asyncio.run(run_rounds(lambda: start_servers(models, env, needed, redis_url), cases, args.rounds,
                                   args.seconds, args.warmup, models, figures, log))  # fmt: skip
        finally:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            if redis is not None:
                redis.stop()
    if not args.skip_memory:
        figures.memory = memory_figure(args.memory_sessions)
    log(report(figures, cases))
    if args.json is not None:
        dump(figures, args.json)


if __name__ == "__main__":
    main()
