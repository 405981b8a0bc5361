"""The baselines' planners: INFaaS' scale up/down, Sommelier's fixed placement, Clipper's
single variant."""

from __future__ import annotations

from collections.abc import Mapping

from rheostat.planning import DeviceSpec, FamilyDemand, MilpPlanner, Problem, VariantSpec
from rheostat.planning.baselines import (
    FixedPlacementPlanner,
    InfaasPlanner,
    VariantChoice,
    restrict_variants,
)

# capacity at SLO 0.2 s (batch budget 0.1 s): big 40 rps, small 160 rps per device
VARIANTS = (
    VariantSpec("f", "big", 0.9, {"gpu": {1: 0.025, 4: 0.1}}),
    VariantSpec("f", "small", 0.7, {"gpu": {1: 0.00625, 4: 0.025}}),
    VariantSpec("g", "only", 0.8, {"gpu": {1: 0.025, 4: 0.1}}),
)
DEVICES = tuple(DeviceSpec(f"d{i}", "gpu") for i in range(3))


def problem(rates: dict[str, float], current: dict[str, tuple[str, str]] | None = None) -> Problem:
    demand = tuple(FamilyDemand(f, r, 0.2) for f, r in rates.items())
    return Problem(DEVICES, VARIANTS, demand, current=current or {}, headroom=0.0)


def running(assignment: Mapping[str, tuple[str, str] | None]) -> dict[str, tuple[str, str]]:
    return {d: k for d, k in assignment.items() if k is not None}


def test_restrict_variants_keeps_one_per_family() -> None:
    least = restrict_variants(VARIANTS, VariantChoice.LEAST_ACCURATE)
    most = restrict_variants(VARIANTS, VariantChoice.MOST_ACCURATE)
    assert [v.name for v in least] == ["small", "only"]
    assert [v.name for v in most] == ["big", "only"]
    assert restrict_variants(VARIANTS, VariantChoice.ALL) == VARIANTS


def test_infaas_replicates_while_idle_devices_last_then_downgrades() -> None:
    planner = InfaasPlanner()
    light = planner.solve(problem({"f": 30.0}))
    assert [k for k in light.assignment.values() if k] == [("f", "big")]
    heavy = planner.solve(problem({"f": 110.0}, current=running(light.assignment)))
    assert sorted(k for k in heavy.assignment.values() if k) == [("f", "big")] * 3
    more = planner.solve(problem({"f": 150.0}, current=running(heavy.assignment)))
    assert sorted(k[1] for k in more.assignment.values() if k) == ["big", "big", "small"]


def test_infaas_scales_down_when_load_falls() -> None:
    current = {"d0": ("f", "small"), "d1": ("f", "small"), "d2": ("f", "big")}
    calm = InfaasPlanner().solve(problem({"f": 30.0}, current=current))
    assert sorted(k for k in calm.assignment.values() if k) == [("f", "big")]


def test_infaas_never_takes_a_device_from_another_family() -> None:
    current = {"d0": ("g", "only"), "d1": ("g", "only"), "d2": ("f", "big")}
    plan = InfaasPlanner().solve(problem({"f": 300.0, "g": 70.0}, current=current))
    assert [plan.assignment[d] for d in ("d0", "d1")] == [("g", "only")] * 2
    assert plan.assignment["d2"] == ("f", "small")  # downgraded for throughput instead


def test_fixed_placement_changes_variants_but_not_families() -> None:
    planner = FixedPlacementPlanner(MilpPlanner().solve)
    first = planner.solve(problem({"f": 60.0, "g": 30.0}))
    families = {d: k[0] for d, k in first.assignment.items() if k}
    later = planner.solve(problem({"f": 200.0, "g": 5.0}, current=running(first.assignment)))
    assert {d: k[0] for d, k in later.assignment.items() if k} == families
    assert ("f", "small") in later.assignment.values()
