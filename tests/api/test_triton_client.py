"""Stock clients work unchanged: NVIDIA's tritonclient against rheostat (toy repository)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import TOY_WEIGHTS, Server, start_server, stop_server

pytestmark = pytest.mark.integration

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(toy_repository: Path) -> Iterator[Server]:
    server = start_server(toy_repository)
    yield server
    stop_server(server)


@pytest.fixture
def client(server: Server) -> Iterator[object]:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def test_health_and_metadata(client) -> None:  # type: ignore[no-untyped-def]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("toy") and client.is_model_ready("toy.fast", "1")
    assert client.get_server_metadata()["name"] == "rheostat"
    assert client.get_model_metadata("toy.slow")["inputs"][0]["shape"] == [-1, 4]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_stock_client(client, binary: bool) -> None:  # type: ignore[no-untyped-def]
    x = np.array([[1, 2, 3, 4], [4, 3, 2, 1]], np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=binary)]
    result = client.infer("toy.fast", [tensor], outputs=outputs, parameters={"slo_ms": 500})
    np.testing.assert_allclose(result.as_numpy("logits"), x @ TOY_WEIGHTS["fast"], rtol=1e-6)
    assert result.get_response()["parameters"]["variant"] == "toy.fast"


def test_classification_and_statistics(client) -> None:  # type: ignore[no-untyped-def]
    x = np.array([[1, 2, 3, 4]], np.float32)
    tensor = httpclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    top = [httpclient.InferRequestedOutput("logits", class_count=1)]
    result = client.infer("toy", [tensor], outputs=top)
    best = int(np.argmax(x @ TOY_WEIGHTS["slow"]))
    assert result.as_numpy("logits")[0][0].decode().split(":")[1:] == [str(best), "abc"[best]]
    stats = client.get_inference_statistics("toy.slow")["model_stats"][0]
    assert stats["inference_count"] >= 1


def test_repository_control_and_errors(client) -> None:  # type: ignore[no-untyped-def]
    names = {m["name"] for m in client.get_model_repository_index()}
    assert {"toy", "toy.fast", "toy.slow"} <= names
    client.unload_model("toy.fast")
    assert not client.is_model_ready("toy.fast")
    client.load_model("toy.fast")
    assert client.is_model_ready("toy.fast")
    tensor = httpclient.InferInput("input", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected \[-1, 4\]"):
        client.infer("toy", [tensor])
