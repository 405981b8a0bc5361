"""The real server on loopback with real worker processes and ONNX Runtime (toy models).

The toy family's variants compute `input @ W` with known weights, so every answer is exact.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import TOY_WEIGHTS, Server, build_toy_repository
from rheostat.api.codec import decode_infer_response, encode_infer_request

pytestmark = pytest.mark.integration

X = np.array([[1, 2, 3, 4], [0.5, -1, 2, 0]], dtype=np.float32)


def json_infer(x: np.ndarray, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
            }
        ]
    }
    if parameters:
        body["parameters"] = parameters
    return body


@pytest.fixture(scope="module")
def server(toy_repository: Path) -> Iterator[Server]:
    from conftest import start_server, stop_server

    server = start_server(toy_repository, "--http-max-input-size", str(2**20))
    yield server
    stop_server(server)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2").json()
    assert meta["name"] == "rheostat"
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(meta["extensions"])


def test_model_metadata_and_readiness(client: httpx.Client) -> None:
    family = client.get("/v2/models/toy").json()
    assert family["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert family["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]
    assert set(family["parameters"]["variants"]) == {"fast", "slow"}
    variant = client.get("/v2/models/toy.fast/versions/1").json()
    assert variant["versions"] == ["1"]
    assert client.get("/v2/models/toy/ready").json() == {"name": "toy", "ready": True}
    assert client.get("/v2/models/toy.slow/versions/1/ready").status_code == 200


def test_json_inference_on_the_family_uses_the_plan(client: httpx.Client) -> None:
    response = client.post("/v2/models/toy/infer", json=json_infer(X))
    assert response.status_code == 200, response.text
    body = response.json()
    (out,) = body["outputs"]
    assert out["name"] == "logits" and out["shape"] == [2, 3]
    np.testing.assert_allclose(np.reshape(out["data"], (2, 3)), X @ TOY_WEIGHTS["slow"], rtol=1e-6)
    params = body["parameters"]
    assert params["variant"] == "toy.slow" and params["accuracy"] == 0.9
    assert params["slo_met"] is True and params["compute_ms"] > 0


def test_binary_inference_with_pinned_variant(client: httpx.Client) -> None:
    content, headers = encode_infer_request(
        [("input", X)], binary=True, outputs=["logits"], binary_data_output=True
    )
    response = client.post("/v2/models/toy.fast/versions/1/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    header_length = int(response.headers["Inference-Header-Content-Length"])
    decoded = decode_infer_response(response.content, header_length)
    np.testing.assert_allclose(decoded.outputs[0].data, X @ TOY_WEIGHTS["fast"], rtol=1e-6)
    assert decoded.parameters["variant"] == "toy.fast"


def test_min_accuracy_and_classification(client: httpx.Client) -> None:
    body = json_infer(X[:1], min_accuracy=0.85)
    body["outputs"] = [{"name": "logits", "parameters": {"classification": 2}}]
    response = client.post("/v2/models/toy.fast/infer", json=body)
    assert response.status_code == 400  # pinned fast (0.80) cannot satisfy 0.85
    response = client.post("/v2/models/toy/infer", json=body)
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    scores = (X[:1] @ TOY_WEIGHTS["slow"])[0]
    top = np.argsort(-scores)[:2]
    assert out["datatype"] == "BYTES"
    assert out["data"] == [f"{scores[i]:f}:{i}:{'abc'[i]}" for i in top]


ERRORS = [
    ("toy", b"{not json", 400, "not valid JSON"),
    ("toy", b'{"inputs": [{"name": "input", "datatype": "INT32", "shape": [1, 4], "data": [1,2,3,4]}]}', 400, "expected FP32"),
    ("toy", b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5], "data": [1,2,3,4,5]}]}', 400, "expected [-1, 4]"),
    ("toy", b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3,4]}]}', 400, "unknown input 'pixels'"),
    ("toy", b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3]}]}', 400, "4"),
    ("toy", b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3,4]}], "parameters": {"min_accuracy": 0.99}}', 400, "min_accuracy 0.99"),
    ("toy", b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3,4]}], "parameters": {"slo_ms": "fast"}}', 400, "slo_ms='fast'"),
    ("toy", b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3,4]}], "outputs": [{"name": "probs"}]}', 400, "unknown output 'probs'"),
    ("nope", b"{}", 404, "unknown model 'nope'"),
    ("toy.medium", b"{}", 404, "known models"),
    ("toy.fast/versions/7", b"{}", 404, "version '7'"),
    ("toy", b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3,4]}], "parameters": {"slo_ms": 0.001}}', 504, "cannot be met"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "body", "status", "message"), ERRORS)
def test_errors_name_the_offending_value(
    client: httpx.Client, model: str, body: bytes, status: int, message: str
) -> None:
    response = client.post(f"/v2/models/{model}/infer", content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_oversized_payloads_get_413(client: httpx.Client) -> None:
    big = np.zeros((2**16, 4), np.float32)  # 1 MiB of data + header > the 1 MiB limit
    content, headers = encode_infer_request([("input", big)], binary=True)
    response = client.post("/v2/models/toy/infer", content=content, headers=headers)
    assert response.status_code == 413
    assert "exceeds the limit of 1048576 bytes" in response.json()["error"]


def test_unknown_route_and_method_are_json_errors(client: httpx.Client) -> None:
    assert client.get("/v3/whatever").status_code == 404
    response = client.get("/v2/models/toy/infer")
    assert response.status_code == 405 and "error" in response.json()


def _garbage(rng: random.Random, i: int) -> tuple[bytes, dict[str, str]]:
    valid = json_infer(X[:1])
    kinds = [
        lambda: rng.randbytes(rng.randint(0, 300)),
        lambda: b'{"inputs": ' + rng.randbytes(20),
        lambda: str(valid).encode(),  # Python repr, not JSON
        lambda: (
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ["a","b","c","d"]}]}'
        ),
        lambda: (
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4], "data": []}]}'
        ),
        lambda: b'{"inputs": [], "outputs": 3}',
        lambda: (
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 99}}]}'
        ),
        lambda: b"[1, 2, 3]",
        lambda: b"null",
        lambda: (
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1e400, 0, 0, 0]}]}'
        ),
    ]
    headers = {"Inference-Header-Content-Length": str(rng.randint(-5, 50))} if i % 7 == 0 else {}
    return kinds[i % len(kinds)](), headers


def test_server_survives_1000_malformed_requests(client: httpx.Client) -> None:
    rng = random.Random(0)
    statuses = []
    for i in range(1000):
        content, headers = _garbage(rng, i)
        statuses.append(
            client.post("/v2/models/toy/infer", content=content, headers=headers).status_code
        )
    assert set(statuses) <= {400, 413}, sorted(set(statuses))
    response = client.post("/v2/models/toy/infer", json=json_infer(X))
    assert response.status_code == 200


def test_repository_index_unload_and_load(client: httpx.Client) -> None:
    index = {e["name"]: e for e in client.post("/v2/repository/index").json()}
    assert index["toy.fast"]["state"] == "READY"
    assert client.post("/v2/repository/models/toy.fast/unload").status_code == 200
    response = client.post("/v2/models/toy.fast/infer", json=json_infer(X))
    assert response.status_code == 503 and "not loaded" in response.json()["error"]
    assert client.get("/v2/models/toy.fast/ready").status_code == 503
    index = {e["name"]: e for e in client.post("/v2/repository/index").json()}
    assert index["toy.fast"]["state"] == "UNAVAILABLE"
    assert client.post("/v2/models/toy/infer", json=json_infer(X)).status_code == 200
    assert client.post("/v2/repository/models/toy.fast/load").status_code == 200
    assert client.post("/v2/models/toy.fast/infer", json=json_infer(X)).status_code == 200


def test_statistics_count_inferences(client: httpx.Client) -> None:
    before = client.get("/v2/models/toy.fast/stats").json()["model_stats"][0]
    for _ in range(3):
        client.post("/v2/models/toy.fast/infer", json=json_infer(X))
    after = client.get("/v2/models/toy.fast/stats").json()["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 6
    assert (
        after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
        == 3
    )
    assert after["execution_count"] > before["execution_count"]


def test_full_queue_answers_429_with_retry_after(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    repo = build_toy_repository(tmp_path, policy="max_delay", queue=2)
    # max_delay with 1 ms and a queue of 2: flood the slow variant from many threads
    server = serve(repo)
    body = json_infer(np.ones((2, 4), np.float32))

    def call(_: int) -> httpx.Response:
        return httpx.post(f"{server.url}/v2/models/toy.slow/infer", json=body, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, range(64)))
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 429}
    rejected = [r for r in responses if r.status_code == 429]
    assert rejected, "expected some 429s with a queue of 2"
    assert int(rejected[0].headers["Retry-After"]) >= 1
    assert "is full" in rejected[0].json()["error"]


def test_worker_killed_mid_load_loses_no_request(
    toy_repository: Path, serve: Callable[..., Server]
) -> None:
    import os
    import signal
    import time

    server = serve(toy_repository)
    (worker,) = server.worker_pids()
    stop = threading.Event()
    results: list[int] = []
    errors: list[str] = []
    body = json_infer(X)

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v2/models/toy/infer", json=body)
                results.append(r.status_code)
                if r.status_code != 200:
                    errors.append(r.json()["error"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    # kill until a kill lands mid-batch (the worker is busy nearly all the time under 4
    # clients, but a kill between two batches loses nothing and proves nothing)
    for _ in range(5):
        os.kill(worker, signal.SIGKILL)
        time.sleep(2.0)
        if any("requests in flight or queued: retrying" in line for line in server.log):
            break
        (worker,) = server.worker_pids()
    stop.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert set(results) <= {200, 503, 504}, errors
    lost = [line for line in server.log if "requests in flight or queued: retrying" in line]
    assert lost, "no kill landed on a batch in flight"
    (restarted,) = server.worker_pids()
    assert restarted != worker
    assert results.count(200) > 20
    assert httpx.post(f"{server.url}/v2/models/toy/infer", json=body).status_code == 200
