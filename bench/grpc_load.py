"""gRPC cases, alternated in the same rounds as case (a) of bench/run_all.py:

    python -m bench.grpc_load [--rounds 3] [--seconds 3] [--sequences 64]

Each round starts `rnnserve serve` afresh (dynamic batching, access log off, gRPC on a free port), pinned to CPU 0
as run_all pins it; the load generator (this process) runs on CPU 1. Cases, their order rotated from round to round:

  a            HTTP JSON step, 64 sessions (run_all's case (a), for the ratio)
  grpc-unary   gRPC ModelInfer, 64 sequences, one request in flight each, on one channel (HTTP/2 connection)
  grpc-stream  gRPC ModelStreamInfer, 64 sequences on one stream, one request in flight per sequence
  grpc-live    gRPC ServerLive, 64 calls in flight on one channel: grpcio's own cost of a call that does nothing

Each gRPC request is one step of its sequence (1 timestep of the bench model, raw FP32 contents), built and
serialised once per client so that the load generator measures the server. Reported: steps/s, p50/p99 latency of a
request, server CPU per step, and the median over rounds of each case's ratio to (a) in the same round, in
throughput and in steps per server CPU second (the figure a busy, shared machine disturbs least).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np

from bench.bench_model import FEATURES, MODEL_NAME, write_bench_model
from bench.loadgen import Result, Step, drive, pin_to_cpu, use_uvloop
from bench.run_all import model_counters
from bench.scenarios import build_clients
from bench.servers import Server, free_port, rnnserve
from rnnserve.grpc.protos import grpc_service_pb2 as pb

SERVER_CPU = 0
LOADGEN_CPU = 1
SERVICE = "/inference.GRPCInferenceService"
CASES = ("a", "grpc-unary", "grpc-stream", "grpc-live")
Close = Callable[[], Awaitable[None]]


def step_request(sequence_id: int, request_id: str, *, start: bool = False) -> pb.ModelInferRequest:
    x = np.random.default_rng(sequence_id).standard_normal((1, 1, FEATURES)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=MODEL_NAME, id=request_id)
    request.inputs.add(name="x", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.tobytes())
    request.parameters["sequence_id"].int64_param = sequence_id
    if start:
        request.parameters["sequence_start"].bool_param = True
    return request


async def start_sequences(channel: grpc.aio.Channel, ids: range) -> None:
    infer = channel.unary_unary(f"{SERVICE}/ModelInfer", request_serializer=None, response_deserializer=None)
    for sequence_id in ids:
        await infer(step_request(sequence_id, "start", start=True).SerializeToString())


async def unary_clients(address: str, sequences: int) -> tuple[list[Step], Close]:
    channel = grpc.aio.insecure_channel(address)
    ids = range(1, sequences + 1)
    await start_sequences(channel, ids)
    infer = channel.unary_unary(f"{SERVICE}/ModelInfer", request_serializer=None, response_deserializer=None)

    def client(sequence_id: int) -> Step:
        payload = step_request(sequence_id, str(sequence_id)).SerializeToString()

        async def step() -> int:
            await infer(payload)
            return 1

        return step

    return [client(i) for i in ids], channel.close


class StreamMux:
    """One ModelStreamInfer call shared by many clients: a writer task sends what they queue, a reader task hands
    each response to the client waiting for its request id."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        method = channel.stream_stream(
            f"{SERVICE}/ModelStreamInfer",
            request_serializer=None,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        self.call = method()
        self.outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._read())]

    async def _write(self) -> None:
        while True:
            await self.call.write(await self.outgoing.get())

    async def _read(self) -> None:
        async for response in self.call:
            future = self.waiting.pop(response.infer_response.id)
            if response.error_message:
                future.set_exception(RuntimeError(response.error_message))
            else:
                future.set_result(None)

    async def send(self, request_id: str, payload: bytes) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        self.outgoing.put_nowait(payload)
        await future

    async def close(self) -> None:
        await self.call.done_writing()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def live_clients(address: str, sequences: int) -> tuple[list[Step], Close]:
    channel = grpc.aio.insecure_channel(address)
    live = channel.unary_unary(f"{SERVICE}/ServerLive", request_serializer=None, response_deserializer=None)

    async def step() -> int:
        await live(b"")
        return 1

    return [step] * sequences, channel.close


async def stream_clients(address: str, sequences: int) -> tuple[list[Step], Close]:
    channel = grpc.aio.insecure_channel(address)
    ids = range(100_001, 100_001 + sequences)
    await start_sequences(channel, ids)
    mux = StreamMux(channel)

    def client(sequence_id: int) -> Step:
        request_id = str(sequence_id)
        payload = step_request(sequence_id, request_id).SerializeToString()

        async def step() -> int:
            await mux.send(request_id, payload)
            return 1

        return step

    async def close() -> None:
        await mux.close()
        await channel.close()

    return [client(i) for i in ids], close


async def run_case(
    case: str, server: Server, grpc_port: int, sequences: int, seconds: float
) -> tuple[Result, float, float]:
    """The case's result, the server's CPU seconds in the window, and model calls per step (from /metrics)."""
    address = f"127.0.0.1:{grpc_port}"
    if case == "a":
        clients, close = await build_clients("step-json", server.url, MODEL_NAME, sequences, 10)
    elif case == "grpc-unary":
        clients, close = await unary_clients(address, sequences)
    elif case == "grpc-live":
        clients, close = await live_clients(address, sequences)
    else:
        clients, close = await stream_clients(address, sequences)
    cpu: dict[str, float] = {}
    calls_before, steps_before, _ = await model_counters(server)
    try:
        result = await drive(
            case, clients, seconds, 0.5, on_window=lambda when: cpu.update({when: server.cpu_seconds()})
        )
    finally:
        await close()
    calls_after, steps_after, _ = await model_counters(server)
    calls_per_step = (calls_after - calls_before) / max(steps_after - steps_before, 1.0)
    return result, cpu.get("stop", 0.0) - cpu.get("start", 0.0), calls_per_step


async def main_async(args: argparse.Namespace) -> None:
    models = Path(tempfile.mkdtemp(prefix="rnnserve-bench-grpc-"))
    write_bench_model(models)
    ratios: dict[str, list[float]] = {case: [] for case in CASES}
    cpu_ratios: dict[str, list[float]] = {case: [] for case in CASES}
    cpu_per_step: dict[str, list[float]] = {case: [] for case in CASES}
    results: dict[str, list[Result]] = {case: [] for case in CASES}
    for index in range(args.rounds):
        grpc_port = free_port()
        server = rnnserve("rnnserve", models, SERVER_CPU, executor="dynamic",
                          extra_env={"RNNSERVE_GRPC_PORT": str(grpc_port)}).start()  # fmt: skip
        try:
            order = CASES[index % len(CASES) :] + CASES[: index % len(CASES)]
            steps: dict[str, float] = {}
            print(f"-- round {index + 1}/{args.rounds}", flush=True)
            for case in order:
                result, cpu_s, calls = await run_case(case, server, grpc_port, args.sequences, args.seconds)
                results[case].append(result)
                steps[case] = result.steps_per_s
                per_step = cpu_s / result.steps * 1e6 if result.steps else float("nan")
                cpu_per_step[case].append(per_step)
                print(f"{result.line()}  server {per_step:6.1f} us CPU/step  {calls:.3f} model calls/step", flush=True)
            for case in CASES:
                ratios[case].append(steps[case] / steps["a"])
                cpu_ratios[case].append(cpu_per_step["a"][-1] / cpu_per_step[case][-1])
        finally:
            server.stop()
    print("\nmedian over rounds (same-round ratios to (a): throughput, and steps per server CPU second):")
    for case in CASES:
        best = max(results[case], key=lambda r: r.steps_per_s)
        print(
            f"  {case:<12} {statistics.median(r.steps_per_s for r in results[case]):>9.0f} steps/s  "
            f"x{statistics.median(ratios[case]):.2f} of (a)  "
            f"{statistics.median(cpu_per_step[case]):6.1f} us CPU/step (x{statistics.median(cpu_ratios[case]):.2f})  "
            f"p50 {statistics.median(r.percentile(0.5) for r in results[case]) * 1e3:.2f} ms  "
            f"p99 {statistics.median(r.percentile(0.99) for r in results[case]) * 1e3:.2f} ms  "
            f"(best round {best.steps_per_s:.0f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sequences", type=int, default=64)
    args = parser.parse_args()
    pin_to_cpu(LOADGEN_CPU)
    use_uvloop()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
