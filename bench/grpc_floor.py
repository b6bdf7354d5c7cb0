"""What a gRPC stream message costs a Python server that does nothing with it: the floor under ModelStreamInfer.

    python -m bench.grpc_floor [--messages 20000] [--in-flight 64]

A bidirectional echo (bytes in, the same bytes out, no protobuf) on one stream, served in a child process pinned to
CPU 0 by each server this environment has, and driven by a `grpc.aio` client on CPU 1 with `--in-flight` messages
outstanding, as bench/grpc_load.py drives rnnserve's ModelStreamInfer. Reported: messages/s and the server's CPU
per message (from /proc), next to which an HTTP step of case (a) (bench/run_all.py) can be set: if the bare
transport costs more CPU per message than rnnserve's whole HTTP step, no work in rnnserve's own code can bring a
gRPC stream up to case (a) on one server core.

Servers: `grpcio-aio` (grpcio's asyncio server, what rnnserve uses), `grpcio-sync` (grpcio's thread-pool server),
and, when installed (they are not rnnserve dependencies), `grpclib` (pure-Python gRPC on h2) and `h2` (the h2
library's HTTP/2 state machine with gRPC's message framing written out by hand, answers coalesced per read: the
least a Python HTTP/2 server can do).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc

from bench.loadgen import pin_to_cpu, use_uvloop
from bench.redis_server import free_port

SERVER_CPU = 0
CLIENT_CPU = 1
METHOD = "/floor.Echo/Stream"
MESSAGE = b"x" * 200  # about a one-step ModelInferRequest of the bench model (32 float32 + names and parameters)


def _same(data: bytes) -> bytes:
    return data


async def _aio_echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def _sync_echo(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    yield from requests


def _handlers(behaviour: Any) -> tuple[grpc.GenericRpcHandler, ...]:
    handler = grpc.stream_stream_rpc_method_handler(behaviour, _same, _same)
    return (grpc.method_handlers_generic_handler("floor.Echo", {"Stream": handler}),)


def serve_grpcio_aio(port: int) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(_handlers(_aio_echo))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    use_uvloop()
    asyncio.run(run())


def serve_grpcio_sync(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(_handlers(_sync_echo))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_grpclib(port: int) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.encoding.base import CodecBase
    from grpclib.server import Server, Stream

    class Raw(CodecBase):  # type: ignore[misc]
        __content_subtype__ = "proto"

        def encode(self, message: bytes, message_type: object) -> bytes:
            return message

        def decode(self, data: bytes, message_type: object) -> bytes:
            return data

    class Echo:
        async def stream(self, stream: Stream) -> None:  # type: ignore[type-arg]
            async for message in stream:
                await stream.send_message(message)

        def __mapping__(self) -> dict[str, Handler]:
            return {METHOD: Handler(self.stream, Cardinality.STREAM_STREAM, bytes, bytes)}

    async def run() -> None:
        server = Server([Echo()], codec=Raw())
        await server.start("127.0.0.1", port)
        await server.wait_closed()

    use_uvloop()
    asyncio.run(run())


def serve_h2(port: int) -> None:
    import h2.config
    import h2.connection
    import h2.events

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            self.conn.initiate_connection()
            self.transport.write(self.conn.data_to_send())
            self.pending: dict[int, bytearray] = {}

        def data_received(self, data: bytes) -> None:
            answers: dict[int, bytearray] = {}
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self.pending[event.stream_id] = bytearray()
                    headers = [(":status", "200"), ("content-type", "application/grpc")]
                    self.conn.send_headers(event.stream_id, headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    buffer = self.pending[event.stream_id]
                    buffer += event.data
                    out = answers.setdefault(event.stream_id, bytearray())
                    while len(buffer) >= 5 and len(buffer) >= 5 + struct.unpack_from(">I", buffer, 1)[0]:
                        size = 5 + struct.unpack_from(">I", buffer, 1)[0]
                        out += buffer[:size]  # the message, its 5-byte prefix included, echoed as it came
                        del buffer[:size]
                elif isinstance(event, h2.events.StreamEnded):
                    out = answers.pop(event.stream_id, bytearray())
                    if out:
                        self.conn.send_data(event.stream_id, bytes(out))
                    self.conn.send_headers(event.stream_id, [("grpc-status", "0")], end_stream=True)
            for stream_id, out in answers.items():
                if out:
                    self.conn.send_data(stream_id, bytes(out))
            self.transport.write(self.conn.data_to_send())

    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
        await server.serve_forever()

    use_uvloop()
    asyncio.run(run())


SERVERS = {
    "grpcio-aio": (serve_grpcio_aio, "grpc"),
    "grpcio-sync": (serve_grpcio_sync, "grpc"),
    "grpclib": (serve_grpclib, "grpclib"),
    "h2": (serve_h2, "h2"),
}


def _serve_pinned(name: str, port: int) -> None:
    pin_to_cpu(SERVER_CPU)
    SERVERS[name][0](port)


async def drive(port: int, messages: int, in_flight: int) -> float:
    """Echo `messages` on one stream with `in_flight` outstanding; returns the seconds it took."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(METHOD, request_serializer=_same, response_deserializer=_same)()
        slots = asyncio.Semaphore(in_flight)

        async def write() -> None:
            for _ in range(messages):
                await slots.acquire()
                await call.write(MESSAGE)
            await call.done_writing()

        writer = asyncio.create_task(write())
        started = time.perf_counter()
        async for _ in call:
            slots.release()
        await writer
        return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, messages: int, in_flight: int) -> tuple[float, float]:
    """(messages/s, server CPU us per message) of one server."""
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve_pinned, args=(name, port), daemon=True)
    server.start()
    assert server.pid is not None
    try:
        deadline = time.monotonic() + 30
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or not server.is_alive():
                    raise
                time.sleep(0.2)
        asyncio.run(drive(port, messages // 10, in_flight))  # warm up
        before = cpu_seconds(server.pid)
        seconds = asyncio.run(drive(port, messages, in_flight))
        used = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.join()
    return messages / seconds, used / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()
    pin_to_cpu(CLIENT_CPU)
    use_uvloop()
    for name, (_, module) in SERVERS.items():
        if importlib.util.find_spec(module) is None:
            print(f"{name:<12} (not installed: pip install {module})")
            continue
        rate, cpu = measure(name, args.messages, args.in_flight)
        print(f"{name:<12} {rate:>8,.0f} messages/s   server {cpu:6.1f} us CPU/message", flush=True)


if __name__ == "__main__":
    main()
