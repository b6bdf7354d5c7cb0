"""A small, fast load generator for rnnserve: N clients, one request in flight each, for a fixed time.

HTTP/1.1 keep-alive and WebSocket clients written directly on asyncio streams (uvloop when installed), so that
one load-generator core can outrun one server core: generic clients (httpx, websockets) would measure
themselves. Each client owns one connection and, for session scenarios, one session.

    python bench/loadgen.py --url http://127.0.0.1:8000 --scenario step-json --sessions 64 --seconds 5

Scenarios (bench/scenarios.py): step-json, step-binary, step-at-history, stream and stream-binary (WebSocket),
multiplexed (WS /v1/streams: `--sessions` connections of `--per-connection` sessions each), predict and
predict-binary, history (stateless: resend the whole history each request), ceiling (POST /echo of the minimal
FastAPI app in bench/minimal_app.py), v2-json, v2-binary. bench/run_all.py runs them in alternating rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import orjson


@dataclass
class Result:
    scenario: str
    requests: int
    steps: int
    seconds: float
    latencies: list[float] = field(repr=False)
    errors: int = 0
    first_error: str = ""  # what the first failed request raised, so that a failed case says why

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.scenario:<28} {self.steps_per_s:>10.0f} steps/s  {self.requests / self.seconds:>9.0f} req/s  "
            f"p50 {self.percentile(0.5) * 1e3:7.2f} ms  p99 {self.percentile(0.99) * 1e3:7.2f} ms  "
            f"errors {self.errors}" + (f" (first: {self.first_error})" if self.first_error else "")
        )


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for a benchmark (Content-Length bodies)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json", headers: str = ""
    ) -> tuple[int, bytes, dict[str, str]]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n"
        ).encode()
        return await self.send(head + body)

    async def send(self, request: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Send a request made once (`prepare`), read its response."""
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        block = await self.reader.readuntil(b"\r\n\r\n")
        status_line, _, header_text = block.decode("latin-1").partition("\r\n")
        response_headers: dict[str, str] = {}
        for line in header_text.split("\r\n"):
            key, sep, value = line.partition(":")
            if sep:
                response_headers[key.strip().lower()] = value.strip()
        length = int(response_headers.get("content-length", "0"))
        payload = await self.reader.readexactly(length) if length else b""
        return int(status_line.split(" ", 2)[1]), payload, response_headers

    def prepare(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json", headers: str = ""
    ) -> bytes:
        """The bytes of one request, to `send` repeatedly."""
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n"
        ).encode() + body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WsConnection:
    """A client WebSocket (RFC 6455) on one connection: text or binary frames, masked as clients must."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_binary = False

    async def open(self, path: str) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"WebSocket upgrade refused: {head[:200]!r}")

    async def send(self, payload: bytes, binary: bool = False) -> None:
        assert self.writer is not None
        self.writer.write(self.frame(payload, binary))

    def send_frame(self, frame: bytes) -> None:
        """Send a frame made once with `frame` (the benchmark reuses its masking key)."""
        assert self.writer is not None
        self.writer.write(frame)

    @staticmethod
    def frame(payload: bytes, binary: bool = False) -> bytes:
        """A masked client frame (RFC 6455) holding `payload`."""
        opcode = 0x82 if binary else 0x81
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        return header + mask + masked

    async def receive(self) -> bytes:
        """The next message's payload; `last_binary` says whether it came as a binary frame."""
        assert self.reader is not None
        first, second = await self.reader.readexactly(2)
        self.last_binary = first & 0x0F == 0x2
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(n)
        if first & 0x0F == 0x8:
            raise ConnectionError(f"server closed the stream: {payload[2:]!r}")
        return payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


Step = Callable[[], Awaitable[int]]  # one request; returns the timesteps it carried, raises on failure


async def drive(
    scenario: str,
    clients: list[Step],
    seconds: float,
    warmup: float = 0.5,
    on_window: Callable[[str], None] | None = None,
) -> Result:
    """Run every client in a loop for `seconds` (after `warmup`), one request in flight each. Requests that start
    inside the window count; `on_window("start")` and `on_window("stop")` are called as it opens and closes."""
    latencies: list[float] = []
    counts = {"requests": 0, "steps": 0, "errors": 0}
    first_error: list[str] = []
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds
    if on_window is not None:
        loop_ = asyncio.get_running_loop()
        loop_.call_later(warmup, on_window, "start")
        loop_.call_later(warmup + seconds, on_window, "stop")

    async def loop(step: Step) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            try:
                steps = await step()
            except Exception as exc:
                if not counts["errors"]:
                    first_error.append(f"{type(exc).__name__}: {exc}"[:300])
                counts["errors"] += 1
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                counts["requests"] += 1
                counts["steps"] += steps

    await asyncio.gather(*(loop(step) for step in clients))
    return Result(
        scenario, counts["requests"], counts["steps"], seconds, latencies, counts["errors"], "".join(first_error[:1])
    )


def summarize(results: list[Result]) -> Result:
    """Merge repeated rounds of one scenario."""
    first = results[0]
    return Result(
        first.scenario,
        sum(r.requests for r in results),
        sum(r.steps for r in results),
        sum(r.seconds for r in results),
        [x for r in results for x in r.latencies],
        sum(r.errors for r in results),
        next((r.first_error for r in results if r.first_error), ""),
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pin_to_cpu(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def split_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def json_body(payload: object) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def main() -> None:
    from bench.scenarios import SCENARIOS, build_clients

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="step-json")
    parser.add_argument("--model", default="bench_rnn")
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--history", type=int, default=10)
    parser.add_argument("--per-connection", type=int, default=1, help="sessions per connection (multiplexed)")
    parser.add_argument("--cpu", type=int, default=None, help="pin the load generator to this core")
    args = parser.parse_args()
    pin_to_cpu(args.cpu)
    use_uvloop()

    async def run() -> Result:
        clients, close = await build_clients(
            args.scenario, args.url, args.model, args.sessions, args.history, args.per_connection
        )
        try:
            return await drive(args.scenario, clients, args.seconds)
        finally:
            await close()

    print(asyncio.run(run()).line())


if __name__ == "__main__":
    main()
