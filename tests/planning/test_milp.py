"""The MILP planner on small instances with known optima, plus registry and validation."""

from __future__ import annotations

import random

import pytest

from rheostat.plan import Plan, Replica
from rheostat.planning import (
    Allocation,
    Capacity,
    DeviceSpec,
    ExhaustivePlanner,
    FamilyDemand,
    GreedyPlanner,
    MilpPlanner,
    PlannerName,
    Problem,
    VariantSpec,
    capacity,
    make_planner,
    objective,
)

# Batch of one only, SLO 1 s (budget 0.5 s): capacity = 1 / latency.
# img: big .9 (gpu 10 rps, cpu 2.5), small .6 (gpu 20, cpu 10)
# txt: big .95 (gpu 10, no cpu), small .75 (gpu 40, cpu 5)
VARIANTS = (
    VariantSpec("img", "big", 0.9, {"gpu": {1: 0.1}, "cpu": {1: 0.4}}),
    VariantSpec("img", "small", 0.6, {"gpu": {1: 0.05}, "cpu": {1: 0.1}}),
    VariantSpec("txt", "big", 0.95, {"gpu": {1: 0.1}}),
    VariantSpec("txt", "small", 0.75, {"gpu": {1: 0.025}, "cpu": {1: 0.2}}),
)
DEVICES = (DeviceSpec("g0", "gpu"), DeviceSpec("g1", "gpu"), DeviceSpec("c0", "cpu"))


def make_problem(
    img_rps: float,
    txt_rps: float,
    devices: tuple[DeviceSpec, ...] = DEVICES,
    headroom: float = 0.0,
    img_priority: float = 1.0,
    txt_min: float = 0.0,
    current: dict[str, tuple[str, str]] | None = None,
    time_limit_s: float = 1.0,
) -> Problem:
    demand = (
        FamilyDemand("img", img_rps, 1.0, priority=img_priority),
        FamilyDemand("txt", txt_rps, 1.0, min_accuracy=txt_min),
    )
    return Problem(
        devices, VARIANTS, demand, current or {}, headroom=headroom, time_limit_s=time_limit_s
    )


def solve(problem: Problem) -> Allocation:
    allocation = MilpPlanner().solve(problem)
    assert allocation.status == "optimal"
    return allocation


def on(allocation: Allocation, *devices: str) -> list[tuple[str, str] | None]:
    return sorted((allocation.assignment[d] for d in devices), key=str)


def test_capacity_is_the_best_throughput_within_half_the_slo() -> None:
    v = VariantSpec("f", "v", 0.5, {"gpu": {1: 0.01, 4: 0.02, 8: 0.03, 16: 0.2}})
    assert capacity(v, "gpu", 0.05) == Capacity(4 / 0.02, 4)
    assert capacity(v, "gpu", 0.1) == Capacity(8 / 0.03, 8)
    assert capacity(v, "gpu", 1.0) == Capacity(8 / 0.03, 8)  # 16 fits but is slower
    assert capacity(v, "gpu", 0.01) == Capacity(0.0, 0)
    assert capacity(v, "cpu", 1.0) == Capacity(0.0, 0)


def test_under_capacity_runs_the_most_accurate_variants() -> None:
    allocation = solve(make_problem(5, 5))
    assert on(allocation, "g0", "g1") == [("img", "big"), ("txt", "big")]
    assert allocation.served_rps == {"img": pytest.approx(5), "txt": pytest.approx(5)}
    assert allocation.effective_accuracy == {"img": pytest.approx(0.9), "txt": pytest.approx(0.95)}


def test_over_capacity_downgrades_only_as_far_as_needed() -> None:
    # img 15 rps: big on a gpu (10) + small on the cpu (10), not small on the gpu.
    allocation = solve(make_problem(15, 8))
    assert on(allocation, "g0", "g1") == [("img", "big"), ("txt", "big")]
    assert allocation.assignment["c0"] == ("img", "small")
    assert allocation.served_rps == {"img": pytest.approx(15), "txt": pytest.approx(8)}
    assert allocation.effective_accuracy["img"] == pytest.approx((10 * 0.9 + 5 * 0.6) / 15)


def test_further_over_capacity_downgrades_the_gpu_too() -> None:
    allocation = solve(make_problem(28, 8))
    assert on(allocation, "g0", "g1") == [("img", "small"), ("txt", "big")]
    assert allocation.assignment["c0"] == ("img", "small")
    assert allocation.served_rps == {"img": pytest.approx(28), "txt": pytest.approx(8)}


def test_beyond_the_cheapest_variants_serves_the_most_possible() -> None:
    problem = make_problem(100, 100)
    allocation = solve(problem)
    # Two gpus on txt.small (80 rps) and the cpu on img.small (10): 90 is the maximum.
    assert allocation.assignment == {
        "g0": ("txt", "small"),
        "g1": ("txt", "small"),
        "c0": ("img", "small"),
    }
    assert sum(allocation.served_rps.values()) == pytest.approx(90)
    assert objective(problem, allocation) == pytest.approx(
        objective(problem, ExhaustivePlanner().solve(problem))
    )


def test_served_comes_before_accuracy() -> None:
    # txt.big would serve 10 at .95; txt.small serves 12 at .75: more served wins.
    problem = make_problem(0, 12, devices=(DeviceSpec("g0", "gpu"),))
    assert solve(problem).assignment == {"g0": ("txt", "small")}


def test_min_accuracy_excludes_variants() -> None:
    allocation = solve(make_problem(0, 30, txt_min=0.9))
    assert ("txt", "small") not in allocation.assignment.values()
    assert allocation.served_rps["txt"] == pytest.approx(20)


@pytest.mark.parametrize(("img_priority", "winner"), [(1.0, "img"), (0.5, "txt")])
def test_priority_decides_who_is_shed(img_priority: float, winner: str) -> None:
    # One gpu: img.small serves 20 (x priority), txt.small serves 15.
    problem = make_problem(20, 15, devices=(DeviceSpec("g0", "gpu"),), img_priority=img_priority)
    allocation = solve(problem)
    assert allocation.assignment["g0"] == (winner, "small")
    assert allocation.served_rps[winner] == pytest.approx(20 if winner == "img" else 15)


def test_headroom_is_planned_but_does_not_count_as_served() -> None:
    one = (DeviceSpec("g0", "gpu"),)
    # Target 12 rps: img.small would cover the headroom, but served counts only 10.
    assert solve(make_problem(10, 0, devices=one, headroom=0.2)).assignment == {
        "g0": ("img", "big")
    }
    two = (DeviceSpec("g0", "gpu"), DeviceSpec("g1", "gpu"))
    allocation = solve(make_problem(10, 0, devices=two, headroom=0.2))
    assert allocation.served_rps["img"] == pytest.approx(12)


@pytest.mark.parametrize(
    "current",
    [
        {"g0": ("txt", "big"), "g1": ("img", "big"), "c0": ("txt", "small")},
        {"g0": ("img", "big"), "g1": ("txt", "big"), "c0": ("img", "small")},
    ],
)
def test_swap_penalty_keeps_the_current_assignment_on_ties(
    current: dict[str, tuple[str, str]],
) -> None:
    allocation = solve(make_problem(5, 5, current=current))
    assert allocation.assignment == current


def test_swap_penalty_does_not_block_an_accuracy_gain() -> None:
    current = {"g0": ("img", "small"), "g1": ("txt", "small")}
    allocation = solve(make_problem(5, 5, current=current))
    assert allocation.assignment["g0"] == ("img", "big")
    assert allocation.assignment["g1"] == ("txt", "big")


def test_devices_of_a_type_keep_their_own_variant() -> None:
    devices = tuple(DeviceSpec(f"g{i}", "gpu") for i in range(4))
    current = {
        "g0": ("txt", "big"),
        "g1": ("img", "big"),
        "g2": ("txt", "big"),
        "g3": ("img", "big"),
    }
    allocation = solve(make_problem(20, 20, devices=devices, current=current))
    assert allocation.assignment == current
    assert allocation.split["img"] == {"g1": pytest.approx(10), "g3": pytest.approx(10)}


def test_to_plan_gives_a_valid_plan() -> None:
    current = {"c0": ("txt", "small")}
    allocation = solve(make_problem(15, 0, current=current))
    plan = allocation.to_plan()
    assert isinstance(plan, Plan)
    assert plan.on_device("c0") == [Replica("txt", "small", "c0")]
    assert plan.split["txt"] == {Replica("txt", "small", "c0"): 1.0}  # no traffic: weight 1
    assert sum(plan.split["img"].values()) == pytest.approx(15)
    assert {r.device for r in plan.of_family("img")} == {"g0", "g1"}


def test_without_an_incumbent_it_falls_back_to_greedy() -> None:
    allocation = MilpPlanner().solve(make_problem(15, 8, time_limit_s=1e-9))
    assert allocation.status == "greedy_fallback"
    assert allocation.served_rps == {"img": pytest.approx(15), "txt": pytest.approx(8)}


def test_no_device_can_run_anything() -> None:
    problem = make_problem(5, 5, devices=(DeviceSpec("t0", "tpu"),))
    allocation = solve(problem)
    assert allocation.assignment == {"t0": None}
    assert allocation.served_rps == {"img": 0.0, "txt": 0.0}


def test_registry_builds_planners_by_name() -> None:
    assert isinstance(make_planner("milp"), MilpPlanner)
    assert isinstance(make_planner(PlannerName.GREEDY), GreedyPlanner)
    assert isinstance(make_planner("exhaustive"), ExhaustivePlanner)
    with pytest.raises(ValueError, match="'lp'"):
        make_planner("lp")


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: FamilyDemand("f", -1.0, 1.0), "rate_rps -1.0"),
        (lambda: FamilyDemand("f", 1.0, 0.0), "slo_s 0.0"),
        (lambda: FamilyDemand("f", 1.0, 1.0, priority=0.0), "priority 0.0"),
        (lambda: VariantSpec("f", "v", 1.5, {}), "accuracy 1.5"),
        (lambda: VariantSpec("f", "v", 0.5, {"gpu": {1: 0.0}}), "latency"),
        (
            lambda: make_problem(1, 1, devices=(*DEVICES, DeviceSpec("g0", "gpu"))),
            "duplicate device",
        ),
        (lambda: Problem(DEVICES, VARIANTS, (FamilyDemand("aud", 1, 1),)), "no variant"),
        (lambda: make_problem(1, 1, current={"x9": ("img", "big")}), "unknown devices"),
        (lambda: make_problem(1, 1, current={"g0": ("img", "huge")}), "unknown"),
        (lambda: make_problem(1, 1, headroom=-0.1), "headroom"),
        (lambda: make_problem(1, 1, time_limit_s=0.0), "time_limit_s"),
    ],
)
def test_bad_input_is_rejected_by_name(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


def synthetic_problem(seed: int) -> Problem:
    """40 devices of 3 types, 9 families, 46 variants, demand near capacity."""
    rng = random.Random(seed)
    types = {"cpu": (20, 8.0), "1080ti": (10, 1.5), "v100": (10, 1.0)}
    variants = []
    for f, size in enumerate([12, 4, 5, 4, 4, 4, 5, 3, 5]):
        base_s = rng.uniform(0.004, 0.03)
        for j in range(size):
            points = {
                t: {b: base_s * 1.6**j * slow * (1 + 0.6 * (b - 1)) for b in (1, 2, 4, 8, 16)}
                for t, (_, slow) in types.items()
            }
            variants.append(VariantSpec(f"fam{f}", f"v{j}", 0.6 + 0.4 * (j + 1) / size, points))
    devices = tuple(DeviceSpec(f"{t}-{i}", t) for t, (n, _) in types.items() for i in range(n))
    demand = tuple(
        FamilyDemand(
            f"fam{f}",
            rng.uniform(10, 200),
            rng.choice([0.1, 0.2, 0.4]),
            priority=rng.choice([1, 2]),
        )
        for f in range(9)
    )
    return Problem(devices, tuple(variants), demand, time_limit_s=1.0)


def test_forty_devices_solve_within_the_time_limit() -> None:
    problem = synthetic_problem(0)
    assert len(problem.variants) == 46
    allocation = MilpPlanner().solve(problem)
    assert allocation.status in {"optimal", "time_limit"}
    greedy = GreedyPlanner().solve(problem)  # the warm start when nothing runs yet
    assert objective(problem, allocation).served >= objective(problem, greedy).served
