"""The greedy planner: feasible, served-first, and never better than the MILP."""

from __future__ import annotations

import pytest

from rheostat.planning import (
    Allocation,
    DeviceSpec,
    FamilyDemand,
    GreedyPlanner,
    MilpPlanner,
    Problem,
    VariantSpec,
    objective,
)

# Batch of one, SLO 1 s: capacity = 1 / latency (see test_milp.py for the same cluster).
VARIANTS = (
    VariantSpec("img", "big", 0.9, {"gpu": {1: 0.1}, "cpu": {1: 0.4}}),
    VariantSpec("img", "small", 0.6, {"gpu": {1: 0.05}, "cpu": {1: 0.1}}),
    VariantSpec("txt", "big", 0.95, {"gpu": {1: 0.1}}),
    VariantSpec("txt", "small", 0.75, {"gpu": {1: 0.025}, "cpu": {1: 0.2}}),
)
DEVICES = (DeviceSpec("g0", "gpu"), DeviceSpec("g1", "gpu"), DeviceSpec("c0", "cpu"))


def make_problem(img_rps: float, txt_rps: float, txt_min: float = 0.0) -> Problem:
    demand = (
        FamilyDemand("img", img_rps, 1.0),
        FamilyDemand("txt", txt_rps, 1.0, min_accuracy=txt_min),
    )
    return Problem(DEVICES, VARIANTS, demand, headroom=0.0)


def assert_not_better_than_milp(problem: Problem, greedy: Allocation) -> None:
    mine, best = objective(problem, greedy), objective(problem, MilpPlanner().solve(problem))
    assert mine.served <= best.served + 1e-9
    if mine.served >= best.served - 1e-9:
        assert mine.accuracy <= best.accuracy + 1e-9


def test_under_capacity_runs_the_most_accurate_variants() -> None:
    problem = make_problem(5, 5)
    allocation = GreedyPlanner().solve(problem)
    assert allocation.status == "greedy"
    gpus = {allocation.assignment["g0"], allocation.assignment["g1"]}
    assert gpus == {("img", "big"), ("txt", "big")}
    assert allocation.effective_accuracy == {"img": pytest.approx(0.9), "txt": pytest.approx(0.95)}


@pytest.mark.parametrize(("img_rps", "txt_rps"), [(15, 8), (28, 8), (100, 100), (0, 30)])
def test_serves_demand_where_it_fits_and_never_beats_the_milp(
    img_rps: float, txt_rps: float
) -> None:
    problem = make_problem(img_rps, txt_rps)
    allocation = GreedyPlanner().solve(problem)
    for family, routes in allocation.split.items():
        assert sum(routes.values()) <= problem.target_rps(family) + 1e-9
        assert all(allocation.assignment[d][0] == family for d in routes)  # type: ignore[index]
    assert_not_better_than_milp(problem, allocation)


def test_downgrades_to_serve_more() -> None:
    allocation = GreedyPlanner().solve(make_problem(15, 8))
    assert allocation.served_rps == {"img": pytest.approx(15), "txt": pytest.approx(8)}


def test_upgrades_when_capacity_allows() -> None:
    # The first gpu takes img.small (covers 12 at once), the second brings img.big's 10;
    # then img.small -> img.big keeps 20 >= 12, so both end on the accurate variant.
    problem = Problem(DEVICES[:2], VARIANTS, (FamilyDemand("img", 12.0, 1.0),), headroom=0.0)
    allocation = GreedyPlanner().solve(problem)
    assert allocation.assignment == {"g0": ("img", "big"), "g1": ("img", "big")}


def test_respects_min_accuracy() -> None:
    allocation = GreedyPlanner().solve(make_problem(0, 30, txt_min=0.9))
    assert ("txt", "small") not in allocation.assignment.values()


def test_spare_devices_are_used() -> None:
    allocation = GreedyPlanner().solve(make_problem(1, 1))
    assert None not in allocation.assignment.values()
