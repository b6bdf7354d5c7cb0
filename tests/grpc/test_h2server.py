"""The h2 gRPC server's own part of the protocol (rnnserve.grpc.h2server), from a raw HTTP/2 client that can send
what grpcio's client never does: an unknown method, a compressed or oversized message, a `grpc-timeout` the call
outlives, a small receive window that makes the server wait for WINDOW_UPDATEs, metadata in `-bin` form."""

from __future__ import annotations

import base64
import socket
import struct
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import numpy as np
import pytest
from app_harness import ServerThread
from grpc_client import Grpc
from v2.v2_server import settings_for

from rnnserve.grpc.h2server import Context, _metadata, _timeout
from rnnserve.grpc.protos import grpc_service_pb2 as pb

SERVICE = "/inference.GRPCInferenceService"


@dataclass
class Answer:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    messages: list[bytes] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int((self.trailers or self.headers)[b"grpc-status"])

    @property
    def message(self) -> str:
        return urllib.parse.unquote((self.trailers or self.headers).get(b"grpc-message", b"").decode())


def frame(message: bytes, *, compressed: bool = False) -> bytes:
    return struct.pack(">BI", int(compressed), len(message)) + message


def call(
    port: int,
    path: str,
    body: bytes,
    *,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    window: int = 65535,
    end: bool = True,
    timeout: float = 10.0,
) -> Answer:
    """One call on a new connection: `body` (already framed) sent at once; the client's receive window `window`,
    opened again only by as much as it has read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        conn.initiate_connection()
        stream_id = conn.get_next_available_stream_id()
        request = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "test"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *headers,
        ]
        conn.send_headers(stream_id, request)
        for start in range(0, len(body), 16384):  # the peer's default largest frame
            conn.send_data(stream_id, body[start : start + 16384])
        if end:
            conn.end_stream(stream_id)
        sock.sendall(conn.data_to_send())
        answer = Answer()
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            done = False
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    answer.headers = dict(event.headers or ())
                elif isinstance(event, h2.events.TrailersReceived):
                    answer.trailers = dict(event.headers or ())
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    done = True
            sock.sendall(conn.data_to_send())
            if done:
                break
        while data:
            (size,) = struct.unpack_from(">I", data, 1)
            answer.messages.append(data[5 : 5 + size])
            data = data[5 + size :]
        return answer


@pytest.fixture(scope="module")
def make_module_server(models_dir: Path) -> Iterator[Callable[..., Grpc]]:
    """Servers on the h2 transport (whatever the session's `grpc_server` parameter), stopped after the module."""
    started: list[Grpc] = []

    def start(**overrides: object) -> Grpc:
        settings = settings_for(models_dir, grpc_port=0, grpc_server="h2", **overrides)
        running = ServerThread(settings).start()
        started.append(Grpc(running, running.app.state.grpc_port))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def h2_grpc(make_module_server: Callable[..., Grpc]) -> Grpc:
    return make_module_server()


def test_a_unary_call_answers_its_message_then_ok(h2_grpc: Grpc) -> None:
    answer = call(h2_grpc.port, f"{SERVICE}/ServerLive", frame(pb.ServerLiveRequest().SerializeToString()))
    assert answer.headers[b":status"] == b"200"
    assert answer.headers[b"content-type"] == b"application/grpc"
    assert answer.status == 0
    assert [pb.ServerLiveResponse.FromString(m).live for m in answer.messages] == [True]


def test_an_unknown_method_is_unimplemented_trailers_only(h2_grpc: Grpc) -> None:
    answer = call(h2_grpc.port, f"{SERVICE}/NoSuchMethod", frame(b""))
    assert answer.status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "NoSuchMethod" in answer.message
    assert not answer.messages and not answer.trailers  # the status is in the response's only HEADERS frame


def test_a_compressed_message_is_refused(h2_grpc: Grpc) -> None:
    answer = call(h2_grpc.port, f"{SERVICE}/ServerLive", frame(b"\x1f\x8b", compressed=True))
    assert answer.status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "compressed" in answer.message
    answer = call(h2_grpc.port, f"{SERVICE}/ServerLive", frame(b""), headers=[("grpc-encoding", "gzip")])
    assert answer.status == grpc.StatusCode.UNIMPLEMENTED.value[0]


def test_a_message_past_max_body_bytes_is_resource_exhausted(make_module_server: Callable[..., Grpc]) -> None:
    small = make_module_server(max_body_bytes=4096)
    request = pb.ModelInferRequest(model_name="gru", raw_input_contents=[b"\0" * 5000])
    answer = call(small.port, f"{SERVICE}/ModelInfer", frame(request.SerializeToString()))
    assert answer.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "exceeds the limit" in answer.message


def test_a_message_that_does_not_parse_is_an_error(h2_grpc: Grpc) -> None:
    answer = call(h2_grpc.port, f"{SERVICE}/ModelInfer", frame(b"\xff\xff\xff"))
    assert answer.status == grpc.StatusCode.INTERNAL.value[0]
    assert "cannot be parsed" in answer.message


def test_a_unary_call_with_two_messages_is_refused(h2_grpc: Grpc) -> None:
    live = frame(pb.ServerLiveRequest().SerializeToString())
    answer = call(h2_grpc.port, f"{SERVICE}/ServerLive", live + live)
    assert answer.status == grpc.StatusCode.UNIMPLEMENTED.value[0]


def test_a_call_past_its_grpc_timeout_is_deadline_exceeded(h2_grpc: Grpc) -> None:
    """A stream the client never half-closes, with a deadline of 300 ms: the server ends it at the deadline."""
    started = time.monotonic()
    answer = call(h2_grpc.port, f"{SERVICE}/ModelStreamInfer", b"", headers=[("grpc-timeout", "300m")], end=False)
    elapsed = time.monotonic() - started
    assert answer.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert 0.25 < elapsed < 5.0, elapsed


def test_a_response_larger_than_the_clients_window_waits_for_window_updates(h2_grpc: Grpc) -> None:
    """The client opens 16 KiB at a time; the server sends a 64 KB response as its window allows."""
    x = np.random.default_rng(0).standard_normal((1, 4_000, 3)).astype(np.float32)
    request = pb.ModelInferRequest(model_name="lstm")  # return_sequences: 4 floats a timestep
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    answer = call(h2_grpc.port, f"{SERVICE}/ModelInfer", frame(request.SerializeToString()), window=16384, timeout=60)
    assert answer.status == 0, answer.message
    (response,) = [pb.ModelInferResponse.FromString(m) for m in answer.messages]
    assert sum(len(raw) for raw in response.raw_output_contents) == 4_000 * 4 * 4


def test_metadata_is_read_as_grpcio_gives_it() -> None:
    headers = [
        (b":path", b"/x/y"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"authorization", b"Bearer k"),
        (b"trace-bin", base64.b64encode(b"\x00\x01\xff").rstrip(b"=")),
    ]
    assert Context(_metadata(headers)).invocation_metadata() == (
        ("authorization", "Bearer k"),
        ("trace-bin", b"\x00\x01\xff"),
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"300m", 0.3), (b"2S", 2.0), (b"1M", 60.0), (b"5u", 5e-6), (b"", None), (b"12", None), (b"x1S", None)],
)
def test_grpc_timeout_values(value: bytes, seconds: float | None) -> None:
    assert _timeout(value) == pytest.approx(seconds) if seconds is not None else _timeout(value) is None


def test_a_connection_that_sends_nothing_is_closed_after_the_request_deadline(
    make_module_server: Callable[..., Grpc],
) -> None:
    """A client that connects and never sends HTTP/2's preface holds the connection for `request_timeout_s` at
    most, as a silent HTTP client does; one that speaks is served."""
    quick = make_module_server(request_timeout_s=0.5)
    with socket.create_connection(("127.0.0.1", quick.port), timeout=10) as silent:
        started = time.monotonic()
        while silent.recv(65536):  # the server's SETTINGS, then the close
            pass
        elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 3.0, elapsed
    answer = call(quick.port, f"{SERVICE}/ServerLive", frame(pb.ServerLiveRequest().SerializeToString()))
    assert answer.status == 0
