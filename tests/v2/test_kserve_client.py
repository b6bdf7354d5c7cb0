"""KServe's own Python SDK against /v2: `kserve.InferenceRESTClient` (health, model readiness, infer with binary
tensors and a sequence), and the metadata answers validated by KServe's pydantic data models of the protocol."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from app_harness import ServerThread
from v2_models import FEATURES

kserve = pytest.importorskip("kserve")
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig  # noqa: E402
from kserve.protocol.infer_type import RequestedOutput  # noqa: E402
from kserve.protocol.rest import v2_datamodels as v2  # noqa: E402

ASYNC = pytest.mark.asyncio(loop_scope="session")


def _client() -> InferenceRESTClient:
    return InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))


def _request(x: np.ndarray, parameters: dict, outputs: list[str]) -> InferRequest:
    tensor = InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    wanted = [RequestedOutput(name, {"binary_data": True}) for name in outputs]
    return InferRequest("gru", [tensor], parameters=parameters, request_outputs=wanted)


@ASYNC
async def test_health_and_model_readiness(server: ServerThread) -> None:
    client = _client()
    try:
        assert await client.is_server_live(server.url) is True
        assert await client.is_server_ready(server.url) is True
        assert await client.is_model_ready(server.url, "gru") is True
        assert await client.is_model_ready(server.url, "broken") is False
    finally:
        await client.close()


def test_metadata_fits_kserves_data_models(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url) as http:
        v2.ServerMetadataResponse.model_validate(http.get("/v2").json())
        v2.ServerLiveResponse.model_validate(http.get("/v2/health/live").json())
        v2.ServerReadyResponse.model_validate(http.get("/v2/health/ready").json())
        v2.ModelReadyResponse.model_validate(http.get("/v2/models/gru/ready").json())
        metadata = v2.ModelMetadataResponse.model_validate(http.get("/v2/models/gru").json())
    assert metadata.name == "gru" and [t.name for t in metadata.inputs] == ["x"]


@ASYNC
async def test_a_sequence_in_binary_chunks_equals_one_stateless_infer(server: ServerThread) -> None:
    x = np.random.default_rng(7).normal(size=(1, 5, FEATURES)).astype(np.float32)
    client = _client()
    try:
        whole = await client.infer(server.url, _request(x, {}, ["dense"]), model_name="gru")
        expected = whole.outputs[0].as_numpy()
        chunks = []
        for i, (a, b) in enumerate([(0, 2), (2, 3), (3, 5)]):
            parameters = {"sequence_id": 9101, "sequence_start": i == 0, "sequence_end": b == 5}
            reply = await client.infer(server.url, _request(x[:, a:b], parameters, ["dense"]), model_name="gru")
            [output] = reply.outputs
            assert output.name == "dense" and output.datatype == "FP32"
            chunks.append(output.as_numpy())
    finally:
        await client.close()
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), expected, rtol=1e-5, atol=1e-6)
