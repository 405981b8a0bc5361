"""The live server re-plans under a rising then falling load (real MILP, real models).

Two one-core devices serve the real EfficientNet-Lite family. At a low rate the plan runs the
most accurate variant everywhere; when the rate rises past what that can carry, the
controller moves devices to cheaper variants, and back when the rate falls. Every request
must succeed throughout: switching a plan only changes the traffic split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Server, drive, family_repository, need_cores, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(default_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_cores(2, "two devices")
    repo = family_repository(
        default_repository, tmp_path_factory.mktemp("repo"), "efficientnet_lite"
    )
    server = start_server(repo, "--device", "cpu:0", "--device", "cpu:1", "--planner", "milp")
    yield server
    stop_server(server)


def test_rising_then_falling_load_switches_variants_and_back(server: Server) -> None:
    # a ramp up and down (each step within what one re-plan absorbs), then a long low tail
    phases = [("low", 6, 8), ("up", 15, 3), ("up", 25, 3), ("up", 35, 3), ("up", 45, 3),
              ("high", 52, 8), ("down", 35, 3), ("down", 15, 3), ("low again", 6, 16)]  # fmt: skip
    logs: dict[str, list[tuple[float, int, str]]] = {}
    for name, rate, seconds in phases:
        log = logs.setdefault(name, [])
        drive(server.url, "efficientnet_lite", rate, seconds, 0.0, log)
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
