"""The controller: when to re-plan, and the loop that does it on any clock.

`should_replan` is the pure decision (no clock, no I/O): re-plan when a family's demand moved
by more than `shift_threshold` since the last plan, when SLO violations rose past
`violation_threshold`, or every `interval_s` anyway; never while a solve is running and never
within `min_interval_s` of the last plan (hysteresis in time; the planner's swap penalty adds
hysteresis in space). `Controller` is the thin mechanism: a timer every `tick_s`, a solve
handed to a `SolveRunner` (a thread live, virtual time in the simulator, so the solve's own
duration is real in both), and `apply` once the plan is ready. While a solve runs the server
keeps serving on the old plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from rheostat.clock import Clock
from rheostat.control.demand import DemandEstimator
from rheostat.planning import Allocation, Problem

__all__ = [
    "Controller",
    "ControllerConfig",
    "Decision",
    "SolveRunner",
    "VirtualSolveRunner",
    "should_replan",
]


@dataclass(frozen=True)
class ControllerConfig:
    tick_s: float = 0.5
    """How often the controller looks at demand and violations."""
    interval_s: float = 10.0
    """Re-plan at least this often while there is traffic."""
    min_interval_s: float = 1.0
    """Never re-plan more often than this."""
    shift_threshold: float = 0.15
    """Relative change of a family's demand since the last plan that triggers a re-plan."""
    min_rate_rps: float = 1.0
    """Rates below this are treated as this (so 0 -> 0.5 rps is not an infinite shift)."""
    violation_threshold: float = 0.02
    """SLO-violation ratio over the last tick that triggers a re-plan."""

    def __post_init__(self) -> None:
        for name in ("tick_s", "interval_s", "min_interval_s", "min_rate_rps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        if self.shift_threshold <= 0:
            raise ValueError(f"shift_threshold={self.shift_threshold} must be > 0")
        if not 0 <= self.violation_threshold <= 1:
            raise ValueError(f"violation_threshold={self.violation_threshold} must be in [0, 1]")


@dataclass(frozen=True)
class Decision:
    replan: bool
    reason: str = ""


def should_replan(
    now_s: float,
    last_plan_s: float | None,
    planned_rps: Mapping[str, float],
    rates_rps: Mapping[str, float],
    violation_ratio: float,
    solving: bool,
    config: ControllerConfig,
) -> Decision:
    if solving:
        return Decision(False, "solving")
    if last_plan_s is None:
        return Decision(any(r > 0 for r in rates_rps.values()), "first plan")
    if now_s - last_plan_s < config.min_interval_s:
        return Decision(False, "too soon")
    for family in sorted(set(rates_rps) | set(planned_rps)):
        old = max(planned_rps.get(family, 0.0), config.min_rate_rps)
        new = max(rates_rps.get(family, 0.0), config.min_rate_rps)
        if abs(new - old) / old > config.shift_threshold:
            return Decision(True, f"demand of {family} moved {old:.1f} -> {new:.1f} rps")
    if violation_ratio > config.violation_threshold:
        return Decision(True, f"SLO violations at {violation_ratio:.1%}")
    if now_s - last_plan_s >= config.interval_s:
        return Decision(True, "periodic")
    return Decision(False, "steady")


class SolveRunner(Protocol):
    def submit(
        self, solve: Callable[[], Allocation], on_done: Callable[[Allocation], None]
    ) -> None:
        """Run `solve` without blocking the caller; call `on_done` with its result."""
        ...


class VirtualSolveRunner:
    """For the simulator and tests: the solve's measured time passes on the virtual clock
    (or `solve_time_s`, a fixed model of it, which makes runs repeat exactly)."""

    def __init__(self, clock: Clock, solve_time_s: float | None = None) -> None:
        self.clock = clock
        self.solve_time_s = solve_time_s

    def submit(
        self, solve: Callable[[], Allocation], on_done: Callable[[Allocation], None]
    ) -> None:
        allocation = solve()
        took = allocation.solve_time_s if self.solve_time_s is None else self.solve_time_s
        self.clock.call_at(self.clock.now() + took, lambda: on_done(allocation))


@dataclass
class PlanEvent:
    time_s: float
    reason: str
    rates_rps: dict[str, float]
    allocation: Allocation | None = None
    applied_s: float | None = None


@dataclass
class Controller:
    clock: Clock
    estimator: DemandEstimator
    build_problem: Callable[[Mapping[str, float]], Problem]
    solve: Callable[[Problem], Allocation]
    apply: Callable[[Allocation], None]
    runner: SolveRunner
    config: ControllerConfig = field(default_factory=ControllerConfig)
    violations: Callable[[], float] = lambda: 0.0
    log: list[PlanEvent] = field(default_factory=list)
    _planned: dict[str, float] = field(default_factory=dict)
    _last_plan_s: float | None = None
    _solving: bool = False
    _stopped: bool = False
    _requested: str | None = None

    def request(self, reason: str) -> None:
        """Re-plan at the next tick whatever the demand did (e.g. a device was lost); a solve
        already running is waited for, since it planned for what was there before."""
        self._requested = reason if self._requested is None else f"{self._requested}; {reason}"

    def start(self) -> None:
        self.clock.call_at(self.clock.now() + self.config.tick_s, self.tick)

    def stop(self) -> None:
        self._stopped = True

    def tick(self) -> None:
        if self._stopped:
            return
        now = self.clock.now()
        rates = self.estimator.rates(now)
        if self._requested is not None and not self._solving:
            reason, self._requested = self._requested, None
            self._replan(now, rates, reason)
            self.clock.call_at(now + self.config.tick_s, self.tick)
            return
        decision = should_replan(
            now, self._last_plan_s, self._planned, rates, self.violations(), self._solving,
            self.config,
        )  # fmt: skip
        if decision.replan:
            self._replan(now, rates, decision.reason)
        self.clock.call_at(now + self.config.tick_s, self.tick)

    def _replan(self, now: float, rates: dict[str, float], reason: str) -> None:
        event = PlanEvent(now, reason, dict(rates))
        self.log.append(event)
        self._solving = True
        self._last_plan_s = now
        self._planned = dict(rates)
        problem = self.build_problem(rates)

        def done(allocation: Allocation) -> None:
            self._solving = False
            event.allocation = allocation
            event.applied_s = self.clock.now()
            if not self._stopped:
                self.apply(allocation)

        self.runner.submit(lambda: self.solve(problem), done)
