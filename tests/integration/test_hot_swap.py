"""A new model version registered and loaded while clients keep sending: no request fails,
and answers switch from the old version to the new one for good."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Server, start_server, stop_server

pytestmark = pytest.mark.integration

BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [3.0] * 64}]}


@pytest.fixture()
def server(default_repository: Path, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    repo = tmp_path / "repo"
    shutil.copytree(default_repository / "digits", repo / "digits")
    server = start_server(repo, "--device", "cpu:0")
    yield server, repo
    stop_server(server)


def test_a_version_swapped_under_load_fails_no_request(server: tuple[Server, Path]) -> None:
    srv, repo = server
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            while not stop.is_set():
                r = http.post("/v2/models/digits/infer", json=BODY)
                version = r.json().get("model_version", "") if r.status_code == 200 else ""
                answers.append((time.monotonic(), r.status_code, version))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    model = repo / "digits" / "cnn_large"
    (model / "2").mkdir()
    shutil.copy(model / "1" / "model.onnx", model / "2" / "model.onnx")
    swap = httpx.post(f"{srv.url}/v2/repository/models/digits/load", timeout=60)
    swapped_at = time.monotonic()
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join()

    assert swap.status_code == 200, swap.text
    failures = [(round(t - swapped_at, 2), s) for t, s, _ in answers if s != 200]
    assert failures == [], failures
    before = [v for t, _, v in answers if t < swapped_at - 0.5]
    after = [v for t, _, v in answers if t > swapped_at]
    assert set(before) == {"1"} and after and set(after) == {"2"}, (set(before), set(after))
    assert len(answers) > 200
