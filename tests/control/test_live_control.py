"""The live server re-plans under a rising then falling load (real MILP, real models).

Two one-core devices serve the real EfficientNet-Lite family. At a low rate the plan runs the
most accurate variant everywhere; when the rate rises past what that can carry, the
controller moves devices to cheaper variants, and back when the rate falls. Every request
must succeed throughout: switching a plan only changes the traffic split.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import Server, start_server, stop_server
from rheostat.api.codec import decode_infer_response, encode_infer_request

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(default_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores for two devices")
    repo = tmp_path_factory.mktemp("images-only")
    (repo / "efficientnet_lite").symlink_to(default_repository / "efficientnet_lite")
    server = start_server(repo, "--device", "cpu:0", "--device", "cpu:1", "--planner", "milp")
    yield server
    stop_server(server)


def drive(url: str, rate_rps: float, seconds: float, log: list[tuple[float, int, str]]) -> None:
    """Open-loop load at `rate_rps`: one request every 1/rate seconds, whatever the answers."""
    image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    body, headers = encode_infer_request([("image", image[None])], binary=True)
    start = time.monotonic()

    def one(client: httpx.Client) -> None:
        r = client.post("/v2/models/efficientnet_lite/infer", content=body, headers=headers)
        variant = ""
        if r.status_code == 200:
            length = r.headers.get("Inference-Header-Content-Length")
            response = decode_infer_response(r.content, int(length) if length else None)
            variant = response.parameters["variant"]
        log.append((time.monotonic() - start, r.status_code, variant))

    local = threading.local()
    clients: list[httpx.Client] = []

    def task() -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=30)
            clients.append(local.client)
        one(local.client)

    with ThreadPoolExecutor(32) as pool:
        for i in range(int(rate_rps * seconds)):
            delay = start + i / rate_rps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(task)
    for client in clients:
        client.close()


def test_rising_then_falling_load_switches_variants_and_back(server: Server) -> None:
    # a ramp up and down (each step within what one re-plan absorbs), then a long low tail
    phases = [("low", 6, 8), ("up", 15, 3), ("up", 25, 3), ("up", 35, 3), ("up", 45, 3),
              ("high", 52, 8), ("down", 35, 3), ("down", 15, 3), ("low again", 6, 16)]  # fmt: skip
    logs: dict[str, list[tuple[float, int, str]]] = {}
    for name, rate, seconds in phases:
        log = logs.setdefault(name, [])
        drive(server.url, rate, seconds, log)
    plan = httpx.get(f"{server.url}/rheostat/plan").json()
    failures = {
        name: [(round(t, 1), s) for t, s, _ in log if s != 200] for name, log in logs.items()
    }
    assert failures == {name: [] for name in logs}, (failures, plan)
    best = "efficientnet_lite.lite2"
    low_tail = [v for t, _, v in logs["low"] if t > 4]
    assert low_tail and all(v == best for v in low_tail)
    high_tail = [v for t, _, v in logs["high"] if t > 6]
    assert any(v != best for v in high_tail), plan  # cheaper variants under load
    last = [v for t, _, v in logs["low again"] if t > 12]
    assert last and all(v == best for v in last), plan
    reasons = [e["reason"] for e in plan["control"]["events"]]
    assert any("moved" in r for r in reasons)
    printed = [line for line in server.log if line.startswith("plan: ")]
    assert any("lite2" not in line.split("(")[0] or line.count("lite2") < 2 for line in printed)
    assert printed[-1].split(" (")[0] == (
        "plan: cpu0 -> efficientnet_lite.lite2, cpu1 -> efficientnet_lite.lite2"
    ), printed
