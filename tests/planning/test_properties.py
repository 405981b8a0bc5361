"""Random tiny instances: the MILP is feasible and matches the exhaustive optimum; greedy is
feasible and never beats the MILP."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rheostat.planning import (
    Allocation,
    DeviceSpec,
    ExhaustivePlanner,
    FamilyDemand,
    GreedyPlanner,
    MilpPlanner,
    Problem,
    VariantSpec,
    objective,
)

LATENCIES_S = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
BATCH_SLOWDOWN = [1.5, 2.0, 3.5]
TOL = 1e-9


@st.composite
def variant_specs(draw: st.DrawFn, family: str, name: str, types: list[str]) -> VariantSpec:
    latency: dict[str, dict[int, float]] = {}
    for t in types:
        if draw(st.integers(0, 4)) == 0:  # sometimes cannot run on this type
            continue
        one = draw(st.sampled_from(LATENCIES_S))
        latency[t] = {1: one, 4: one * draw(st.sampled_from(BATCH_SLOWDOWN))}
    accuracy = draw(st.integers(10, 20)) / 20
    return VariantSpec(family, name, accuracy, latency)


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    types = ["cpu", "gpu"][: draw(st.integers(1, 2))]
    devices = [DeviceSpec(f"{t}{i}", t) for t in types for i in range(draw(st.integers(1, 2)))]
    families = ["a", "b"][: draw(st.integers(1, 2))]
    variants = [
        draw(variant_specs(f, f"v{j}", types))
        for f in families
        for j in range(draw(st.integers(1, 2)))
    ]
    demand = tuple(
        FamilyDemand(
            f,
            rate_rps=float(draw(st.integers(0, 60))),
            slo_s=draw(st.sampled_from([0.05, 0.2, 0.5, 1.0])),
            min_accuracy=draw(st.sampled_from([0.0, 0.0, 0.7])),
            priority=float(draw(st.integers(1, 3))),
        )
        for f in families
    )
    keys = [None, *((v.family, v.name) for v in variants)]
    current = {d.name: k for d in devices if (k := draw(st.sampled_from(keys))) is not None}
    return Problem(
        tuple(devices),
        tuple(variants),
        demand,
        current,
        headroom=draw(st.sampled_from([0.0, 0.1, 0.5])),
        mip_rel_gap=1e-9,
        time_limit_s=10.0,
    )


def assert_feasible(problem: Problem, allocation: Allocation) -> None:
    assert set(allocation.assignment) == {d.name for d in problem.devices}
    for device in problem.devices:
        key = allocation.assignment[device.name]
        allowed = {o.key: o.capacity.rps for o in problem.options(device.device_type)}
        assert key is None or key in allowed
        routed = [(f, r[device.name]) for f, r in allocation.split.items() if device.name in r]
        for family, rps in routed:
            assert key is not None and key[0] == family
            assert 0 <= rps <= allowed[key] * (1 + TOL) + TOL
    for family, routes in allocation.split.items():
        assert sum(routes.values()) <= problem.target_rps(family) * (1 + TOL) + TOL
    allocation.to_plan()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_milp_is_feasible_and_lexicographically_optimal(problem: Problem) -> None:
    milp = MilpPlanner().solve(problem)
    assert milp.status == "optimal"
    assert_feasible(problem, milp)
    mine, best = objective(problem, milp), objective(problem, ExhaustivePlanner().solve(problem))
    assert mine.served == pytest.approx(best.served, rel=1e-6, abs=1e-9)
    assert mine.accuracy == pytest.approx(best.accuracy, rel=1e-6, abs=1e-6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_greedy_is_feasible_and_never_beats_the_milp(problem: Problem) -> None:
    greedy = GreedyPlanner().solve(problem)
    assert_feasible(problem, greedy)
    mine, best = objective(problem, greedy), objective(problem, MilpPlanner().solve(problem))
    assert mine.served <= best.served * (1 + 1e-6) + TOL
    if mine.served >= best.served * (1 - 1e-6) - TOL:
        assert mine.accuracy <= best.accuracy + 1e-6
