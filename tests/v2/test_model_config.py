"""GET /v2/models/{m}/config: the parts of a Triton model configuration that apply, read by tritonclient.http's
`get_model_config`."""

from __future__ import annotations

import httpx
import tritonclient.http as triton
from app_harness import ServerThread
from v2_client import raises_error
from v2_models import FEATURES


def test_get_model_config_shows_inputs_outputs_batching_and_sequence_states(
    client: triton.InferenceServerClient, server: ServerThread
) -> None:
    config = client.get_model_config("lstm")

    assert config["name"] == "lstm" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == server.settings.max_request_batch
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [-1, FEATURES]}]
    [output] = config["output"]
    assert output["name"] == "lstm" and output["data_type"] == "TYPE_FP32"
    sequences = config["sequence_batching"]
    assert sequences["max_sequence_idle_microseconds"] == round(server.settings.default_ttl_s * 1e6)
    assert [(s["input_name"], s["output_name"], s["dims"]) for s in sequences["state"]] == [
        ("lstm/h", "lstm/h", [4]),
        ("lstm/c", "lstm/c", [4]),
    ]
    assert client.get_model_config("lstm", model_version="1") == config


def test_a_model_without_sequences_has_no_sequence_batching(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("bidi")
    assert "sequence_batching" not in config
    tokens = client.get_model_config("tokens")
    assert tokens["input"][0]["data_type"] == "TYPE_INT64"


def test_config_of_unknown_models_and_versions_is_404(
    client: triton.InferenceServerClient, server: ServerThread
) -> None:
    raises_error(lambda: client.get_model_config("nope"), 404, contains="no model named 'nope'")
    raises_error(lambda: client.get_model_config("gru", model_version="2"), 404, contains="no version '2'")
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/v2/models/broken/config").status_code == 503
