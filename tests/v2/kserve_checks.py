"""KServe's SDK against a running rnnserve: `python kserve_checks.py URL` exits 0 when every check passes.

A script of its own, run by test_kserve_client.py in a fresh interpreter: kserve registers its own copy of the
Open Inference Protocol's gRPC messages (`inference.ServerLiveRequest`, ...) in protobuf's default descriptor
pool, as tritonclient.grpc does, and the second of the two to be imported in one process fails."""

from __future__ import annotations

import asyncio
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest import v2_datamodels as v2

FEATURES = 3  # tests/v2/v2_models.py's gru


def _client() -> InferenceRESTClient:
    return InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))


def _request(x: np.ndarray, parameters: dict, outputs: list[str]) -> InferRequest:
    tensor = InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    wanted = [RequestedOutput(name, {"binary_data": True}) for name in outputs]
    return InferRequest("gru", [tensor], parameters=parameters, request_outputs=wanted)


async def health_and_readiness(url: str) -> None:
    client = _client()
    try:
        assert await client.is_server_live(url) is True
        assert await client.is_server_ready(url) is True
        assert await client.is_model_ready(url, "gru") is True
        assert await client.is_model_ready(url, "broken") is False
    finally:
        await client.close()


def metadata_fits_kserves_data_models(url: str) -> None:
    with httpx.Client(base_url=url) as http:
        v2.ServerMetadataResponse.model_validate(http.get("/v2").json())
        v2.ServerLiveResponse.model_validate(http.get("/v2/health/live").json())
        v2.ServerReadyResponse.model_validate(http.get("/v2/health/ready").json())
        v2.ModelReadyResponse.model_validate(http.get("/v2/models/gru/ready").json())
        metadata = v2.ModelMetadataResponse.model_validate(http.get("/v2/models/gru").json())
    assert metadata.name == "gru" and [t.name for t in metadata.inputs] == ["x"]


async def sequence_in_binary_chunks_equals_one_stateless_infer(url: str) -> None:
    x = np.random.default_rng(7).normal(size=(1, 5, FEATURES)).astype(np.float32)
    client = _client()
    try:
        whole = await client.infer(url, _request(x, {}, ["dense"]), model_name="gru")
        expected = whole.outputs[0].as_numpy()
        chunks = []
        for i, (a, b) in enumerate([(0, 2), (2, 3), (3, 5)]):
            parameters = {"sequence_id": 9101, "sequence_start": i == 0, "sequence_end": b == 5}
            reply = await client.infer(url, _request(x[:, a:b], parameters, ["dense"]), model_name="gru")
            [output] = reply.outputs
            assert output.name == "dense" and output.datatype == "FP32"
            chunks.append(output.as_numpy())
    finally:
        await client.close()
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), expected, rtol=1e-5, atol=1e-6)


def main(url: str) -> None:
    asyncio.run(health_and_readiness(url))
    print("health and readiness: ok")
    metadata_fits_kserves_data_models(url)
    print("metadata (KServe's data models): ok")
    asyncio.run(sequence_in_binary_chunks_equals_one_stateless_infer(url))
    print("sequence infer with binary data: ok")


if __name__ == "__main__":
    main(sys.argv[1])
