"""The live server re-plans under a rising then falling load (real MILP, real models).

One one-core device serves the real EfficientNet-Lite family; the machine's other core is
left to the HTTP front end and this test's clients (with both cores as devices, a 2-core
machine runs out of CPU for the front end before the devices' profiles say it is full, and
what is measured is the front end, not the re-planning). At a low rate the plan runs the
most accurate variant everywhere; when the rate rises past what that can carry, the
controller moves devices to cheaper variants, and back when the rate falls. Switching a
plan only changes the traffic split, so no request fails for it. The rates are fractions of
what this machine measured (a slower CI machine gets a slower ramp).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import (
    Server,
    drive,
    family_repository,
    native_lite_variants,
    need_cores,
    start_server,
    stop_server,
)
from rheostat.control.live import HEADROOM, TAIL_FACTOR
from rheostat.planning.problem import BATCH_BUDGET_FRACTION, best_throughput

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEST = "efficientnet_lite.lite2"
SLO_S = 0.5  # the family's slo_ms


@pytest.fixture(scope="module")
def server(default_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_cores(2, "one device core and one for the front end and the clients")
    # lite0/1/2 and their int8 copies only: Lite0 at 128-192 px would give the planner far
    # cheaper variants, and the ramp's steps would then sit elsewhere
    repo = family_repository(
        default_repository,
        tmp_path_factory.mktemp("repo"),
        "efficientnet_lite",
        variants=native_lite_variants(default_repository),
    )
    server = start_server(repo, "--device", "cpu:0", "--planner", "milp", "--profile-repeats", "5")
    yield server
    stop_server(server)


def planned_capacity(plan: dict[str, Any], variant: str) -> float:
    """What the planner believes `variant` carries on the device, headroom included: the
    best `b / (TAIL_FACTOR * latency(b))` within the batch budget over 1 + HEADROOM."""
    budget_s = SLO_S * BATCH_BUDGET_FRACTION
    per_device = [
        best_throughput(
            {int(b): s * TAIL_FACTOR for b, s in profile["p50_s"].items()}, budget_s
        ).rps
        for key, profile in plan["profiles"].items()
        if key.split("@")[0] == variant
    ]
    assert len(per_device) == 1, plan["profiles"].keys()
    return per_device[0] / (1 + HEADROOM)


def test_rising_then_falling_load_switches_variants_and_back(server: Server) -> None:
    # Rates follow this machine's measured profiles as the planner sees them: `best` is the
    # rate past which the most accurate variant no longer fits, so the high phase needs a
    # cheaper one, which (`top`) carries at least twice as much.
    plan = httpx.get(f"{server.url}/rheostat/plan").json()
    variants = {key.split("@")[0] for key in plan["profiles"]}
    best = planned_capacity(plan, BEST)
    top = max(planned_capacity(plan, v) for v in variants)
    if top < 2 * best:
        pytest.skip(f"variants too close on this machine: best {best:.1f}, top {top:.1f} rps")
    # a ramp up and down (each step within what one re-plan absorbs), then a long low tail
    phases = [("low", 0.2 * best, 8), ("up", 0.45 * best, 3), ("up", 0.7 * best, 3),
              ("up", 0.9 * best, 3), ("up", 1.1 * best, 3), ("high", 1.3 * best, 8),
              ("down", 0.95 * best, 3), ("down", 0.45 * best, 3),
              ("low again", 0.2 * best, 16)]  # fmt: skip
    logs: dict[str, list[tuple[float, int, str]]] = {}
    for name, rate, seconds in phases:
        log = logs.setdefault(name, [])
        drive(server.url, "efficientnet_lite", rate, seconds, 0.0, log)
    plan = httpx.get(f"{server.url}/rheostat/plan").json()
    # Falling load and low load fail nothing: a plan switch only changes the split. A step
    # up may outrun the plan for the second before the re-plan lands; the server then
    # refuses the few requests it cannot finish in time (429/504, never another error), and
    # a ramp like this one keeps those under 1 %.
    rates = [round(rate, 1) for _, rate, _ in phases]
    failures = {
        name: [(round(t, 1), s) for t, s, _ in log if s != 200] for name, log in logs.items()
    }
    steady = {name: failures[name] for name in ("low", "down", "low again")}
    assert steady == {name: [] for name in steady}, (rates, failures, plan["control"])
    rising = logs["up"] + logs["high"]
    refused = failures["up"] + failures["high"]
    assert all(status in (429, 504) for _, status in refused), refused
    assert len(refused) <= 0.01 * len(rising), (rates, failures, plan["control"])
    low_tail = [v for t, _, v in logs["low"] if t > 4]
    assert low_tail and all(v == BEST for v in low_tail)
    high_tail = [v for t, _, v in logs["high"] if t > 6]
    assert any(v != BEST for v in high_tail), plan  # cheaper variants under load
    last = [v for t, _, v in logs["low again"] if t > 12]
    assert last and all(v == BEST for v in last), plan
    reasons = [e["reason"] for e in plan["control"]["events"]]
    assert any("moved" in r for r in reasons)
    printed = [line.split(" (")[0] for line in server.log if line.startswith("plan: ")]
    assert any(line != f"plan: cpu0 -> {BEST}" for line in printed), printed  # e.g. lite2_int8
    assert printed[-1] == f"plan: cpu0 -> {BEST}", printed
