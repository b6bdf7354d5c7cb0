"""Tenants over gRPC (issue 12): the keys file's tenants, as on HTTP; a tenant's sequence ids are its own, so two
tenants may both use sequence_id 1, and one cannot continue or end the other's; requests are counted by tenant."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import tritonclient.grpc as triton
from grpc_client import Request, infer, raises_status, stream
from prometheus_client.parser import text_string_to_metric_families
from v2.v2_models import FEATURES


def test_two_tenants_reuse_one_sequence_id_over_grpc(make_server: Callable[..., Any], tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("alice:a-key\nbob:b-key\n")
    server = make_server(api_keys_file=keys)
    alice, bob = {"authorization": "Bearer a-key"}, {"authorization": "Bearer b-key"}
    x = {"x": np.full((1, 2, FEATURES), 0.5, dtype=np.float32)}
    y = {"x": np.full((1, 2, FEATURES), -0.5, dtype=np.float32)}
    with triton.InferenceServerClient(server.address) as client:
        first = infer(client, "gru", x, headers=alice, sequence_id=1, sequence_start=True).as_numpy("dense")
        # bob's sequence 1 is not alice's: not started for bob
        raises_status(lambda: infer(client, "gru", x, headers=bob, sequence_id=1), grpc.StatusCode.INVALID_ARGUMENT)
        infer(client, "gru", y, headers=bob, sequence_id=1, sequence_start=True)
        infer(client, "gru", y, headers=bob, sequence_id=1, sequence_end=True)
        # alice's goes on from her own state: her second chunk equals a lone sequence's second chunk
        second = infer(client, "gru", x, headers=alice, sequence_id=1, sequence_end=True).as_numpy("dense")
        lone = infer(client, "gru", x, headers=bob, sequence_id=7, sequence_start=True).as_numpy("dense")
        again = infer(client, "gru", x, headers=bob, sequence_id=7, sequence_end=True).as_numpy("dense")
        np.testing.assert_allclose(first, lone)
        np.testing.assert_allclose(second, again)


def test_grpc_requests_are_counted_by_tenant(make_server: Callable[..., Any], tmp_path: Path) -> None:
    """`rnnserve_tenant_requests_total` counts each ModelInfer call and each request on a ModelStreamInfer stream
    under the tenant of its key, with the method's path as the route, as it counts HTTP requests; a call refused for
    its key under `-`."""
    keys = tmp_path / "keys"
    keys.write_text("alice:a-key\nbob:b-key\n")
    server = make_server(api_keys_file=keys)
    alice, bob = {"authorization": "Bearer a-key"}, {"authorization": "Bearer b-key"}
    x = {"x": np.full((1, 2, FEATURES), 0.5, dtype=np.float32)}
    with triton.InferenceServerClient(server.address) as client:
        infer(client, "gru", x, headers=alice, sequence_id=1, sequence_start=True)
        infer(client, "gru", x, headers=alice)
        raises_status(lambda: infer(client, "gru", x, headers=bob, sequence_id=1), grpc.StatusCode.INVALID_ARGUMENT)
        streamed = stream(
            client,
            [
                Request("0", "gru", x, None, {"sequence_id": 1}),  # alice's sequence: a plain step, batched
                Request("1", "gru", x, None, {"sequence_id": 1, "sequence_end": True}),
                Request("2", "gru", x, None, {"sequence_id": 1}),  # ended
            ],
            headers=alice,
        )
        assert streamed.failed == ["2"]
        wrong = {"authorization": "Bearer no-such-key"}  # refused: counted under no tenant, as HTTP's 401s
        raises_status(lambda: infer(client, "gru", x, headers=wrong), grpc.StatusCode.UNAUTHENTICATED)
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    counts = {
        (s.labels["tenant"], s.labels["route"], s.labels["method"], s.labels["status_class"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "rnnserve_tenant_requests"
        for s in family.samples
        if s.name == "rnnserve_tenant_requests_total" and s.labels["method"] == "GRPC"
    }
    unary, streaming = (f"/inference.GRPCInferenceService/{m}" for m in ("ModelInfer", "ModelStreamInfer"))
    assert counts == {
        ("alice", unary, "GRPC", "2xx"): 2,
        ("bob", unary, "GRPC", "4xx"): 1,
        ("alice", streaming, "GRPC", "2xx"): 2,
        ("alice", streaming, "GRPC", "4xx"): 1,
        ("-", unary, "GRPC", "4xx"): 1,
    }
