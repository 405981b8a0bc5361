"""The controller's decisions on the virtual clock, with the real MILP planner."""

from collections.abc import Mapping

import pytest

from rheostat.clock import VirtualClock
from rheostat.control.controller import (
    Controller,
    ControllerConfig,
    VirtualSolveRunner,
    should_replan,
)
from rheostat.control.demand import DemandEstimator
from rheostat.planning import (
    Allocation,
    DeviceSpec,
    FamilyDemand,
    MilpPlanner,
    Problem,
    VariantSpec,
)

CFG = ControllerConfig(tick_s=0.5, interval_s=10.0, min_interval_s=1.0, shift_threshold=0.2)


@pytest.mark.parametrize(
    ("now", "last", "planned", "rates", "violations", "solving", "expected"),
    [
        (0.0, None, {}, {"f": 5.0}, 0.0, False, (True, "first plan")),
        (5.0, 4.5, {"f": 5.0}, {"f": 50.0}, 0.0, False, (False, "too soon")),
        (5.0, 3.0, {"f": 5.0}, {"f": 5.5}, 0.0, False, (False, "steady")),
        (5.0, 3.0, {"f": 5.0}, {"f": 7.0}, 0.0, False, (True, "demand of f moved 5.0 -> 7.0 rps")),
        (5.0, 3.0, {"f": 5.0}, {"f": 5.0}, 0.1, False, (True, "SLO violations at 10.0%")),
        (13.0, 3.0, {"f": 5.0}, {"f": 5.0}, 0.0, False, (True, "periodic")),
        (13.0, 3.0, {"f": 5.0}, {"f": 50.0}, 0.0, True, (False, "solving")),
        (5.0, 3.0, {"f": 0.0}, {"f": 0.5}, 0.0, False, (False, "steady")),  # under min rate
    ],
)
def test_should_replan(
    now: float,
    last: float | None,
    planned: dict[str, float],
    rates: dict[str, float],
    violations: float,
    solving: bool,
    expected: tuple[bool, str],
) -> None:
    decision = should_replan(now, last, planned, rates, violations, solving, CFG)
    assert (decision.replan, decision.reason) == expected


def problem_for(rates: Mapping[str, float]) -> Problem:
    # "big": 100 rps per device at accuracy 0.9; "small": 400 rps at 0.7 (batch budget 20 ms)
    variants = (
        VariantSpec("f", "big", 0.9, {"cpu": {1: 0.010, 4: 0.040}}),
        VariantSpec("f", "small", 0.7, {"cpu": {1: 0.0025, 4: 0.010}}),
    )
    devices = (DeviceSpec("d0", "cpu"), DeviceSpec("d1", "cpu"))
    demand = (FamilyDemand("f", rates.get("f", 0.0), slo_s=0.040),)
    return Problem(devices, variants, demand, headroom=0.0)


def test_rising_then_falling_demand_moves_to_cheaper_variants_and_back() -> None:
    clock = VirtualClock()
    estimator = DemandEstimator(alpha=0.5)
    applied: list[tuple[float, dict[str, object]]] = []

    def apply(allocation: Allocation) -> None:
        applied.append((clock.now(), dict(allocation.assignment)))

    controller = Controller(
        clock, estimator, problem_for, MilpPlanner().solve, apply, VirtualSolveRunner(clock), CFG
    )
    controller.start()

    def arrivals(rps: int, start: float, seconds: int) -> None:
        for i in range(rps * seconds):
            clock.call_at(start + i / rps, lambda: estimator.record("f", clock.now()))

    arrivals(150, 0.0, 5)  # needs both devices on "big" (100 rps each)
    arrivals(300, 5.0, 5)  # needs one device on "small" (400 rps)
    arrivals(150, 10.0, 8)
    clock.run_until(18.0)
    controller.stop()
    assignments = [a for _, a in applied]
    assert assignments[0] == {"d0": ("f", "big"), "d1": ("f", "big")}
    assert {"d0": ("f", "big"), "d1": ("f", "small")} in assignments or {
        "d0": ("f", "small"),
        "d1": ("f", "big"),
    } in assignments
    assert assignments[-1] == {"d0": ("f", "big"), "d1": ("f", "big")}
    # the solve's own (measured) time passed on the virtual clock before each apply
    assert all(e.applied_s is not None and e.applied_s >= e.time_s for e in controller.log)
    reasons = [e.reason for e in controller.log]
    assert reasons[0] == "first plan" and any("moved" in r for r in reasons)


def test_a_lost_device_is_planned_without_at_once_and_back_when_it_returns() -> None:
    from rheostat.control.plane import ControlPlane, Split

    clock = VirtualClock()
    d0, d1 = DeviceSpec("d0", "cpu"), DeviceSpec("d1", "cpu")
    variants = problem_for({}).variants
    splits: list[tuple[float, Split]] = []
    plane = ControlPlane(
        clock=clock,
        devices=[d0, d1],
        variants=lambda: variants,
        slo_s=lambda family: 0.040,
        solve=MilpPlanner().solve,
        apply_split=lambda split: splits.append((clock.now(), split)),
        runner=VirtualSolveRunner(clock, solve_time_s=0.05),
        config=CFG,
    )
    plane.start()
    for i in range(150 * 30):  # a steady 150 rps: more than one device of "big" carries
        clock.call_at(i / 150, lambda: plane.arrived("f", 1, clock.now()))
    clock.call_at(5.2, lambda: plane.set_devices([d0], "device d1 lost"))
    clock.call_at(5.3, lambda: plane.set_devices([d0, d1], "device d1 back"))  # one tick: one plan
    clock.call_at(12.0, lambda: plane.set_devices([d0], "device d1 lost"))
    clock.run_until(20.0)

    def devices_at(t: float) -> set[str]:
        split = [s for when, s in splits if when <= t][-1]
        return {r.device for weights in split.values() for r in weights}

    assert devices_at(4.9) == {"d0", "d1"}
    assert devices_at(19.9) == {"d0"}  # planned without it
    assert set(plane.current) == {"d0"}
    reasons = [e.reason for e in plane.controller.log] if plane.controller else []
    assert "device d1 lost; device d1 back" in reasons, reasons  # requested together: one plan
    lost = next(e for e in plane.controller.log if e.time_s >= 12.0) if plane.controller else None
    assert lost is not None and lost.reason == "device d1 lost" and lost.time_s <= 12.0 + CFG.tick_s


def test_an_energy_budget_keeps_the_plan_on_variants_within_it() -> None:
    """With 10 W devices, "big" costs 0.1 J per request alone and "small" 0.025 J: a family
    budget of 0.05 J (an app bound to it) plans "small" though "big" has the capacity."""
    from rheostat.control.plane import ControlPlane, Split

    clock = VirtualClock()
    devices = [DeviceSpec("d0", "cpu", active_w=10.0), DeviceSpec("d1", "cpu", active_w=10.0)]
    budget = {"f": 1.0}
    splits: list[Split] = []
    plane = ControlPlane(
        clock=clock, devices=devices, variants=lambda: problem_for({}).variants,
        slo_s=lambda family: 0.040, solve=MilpPlanner().solve, apply_split=splits.append,
        runner=VirtualSolveRunner(clock, solve_time_s=0.01), config=CFG,
        energy_budget=lambda family: budget[family],
    )  # fmt: skip
    assert plane.build_problem({"f": 50.0}).demand[0].max_energy_j == 1.0
    plane.start()
    for i in range(50 * 12):
        clock.call_at(i / 50, lambda: plane.arrived("f", 1, clock.now()))
    clock.call_at(6.0, lambda: budget.update(f=0.05))
    clock.call_at(6.0, lambda: plane.controller and plane.controller.request("budget changed"))
    clock.run_until(12.0)
    plane.stop()
    variants = [{r.variant for w in s.values() for r in w} for s in splits]
    assert variants[0] == {"big"} and variants[-1] == {"small"}, variants
