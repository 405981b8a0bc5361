"""The control plane on any clock: demand in, traffic splits out.

`ControlPlane` observes arrivals and late answers, asks the `Controller` when to re-plan,
builds a planning `Problem` from the devices, the variants' latency profiles and each
family's SLO, has the planner solve it through a `SolveRunner` and hands the resulting
`Allocation` to `apply_split` as a per-family split over replicas. The live server
(`LiveControl`) and the simulator build the same object; they differ in the clock, in where
the profiles come from and in what applying a split costs (nothing live, where every variant
stays loaded; a model load in the simulator when a device changes variant).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rheostat.clock import Clock
from rheostat.control.controller import Controller, ControllerConfig, SolveRunner
from rheostat.control.demand import DemandEstimator
from rheostat.plan import Replica
from rheostat.planning import Allocation, DeviceSpec, FamilyDemand, Problem, VariantSpec
from rheostat.planning.problem import BATCH_BUDGET_FRACTION, AccuracyWeighting

__all__ = ["ControlPlane", "PlanningSettings", "Split", "split_of"]

Split = dict[str, dict[Replica, float]]
"""family -> replica -> weight (planned requests/s)."""


@dataclass(frozen=True)
class PlanningSettings:
    headroom: float = 0.25
    """Capacity planned above the estimated rate (rates are estimates)."""
    headroom_cost: float = 0.0
    """> 0: headroom bought by downgrading variants is discounted (see `Problem`)."""
    swap_penalty: float = 1e-4
    """Cost of changing a device's variant, in the planner's accuracy units."""
    time_limit_s: float = 1.0
    """Solver budget per plan."""
    weighting: AccuracyWeighting = AccuracyWeighting.FAMILY
    """Whether the planner weighs accuracy per family or per request."""
    batch_budget_fraction: float = BATCH_BUDGET_FRACTION
    """Share of the SLO a planned batch may take (the rest is for queueing)."""

    def __post_init__(self) -> None:
        if self.headroom < 0 or self.swap_penalty < 0 or self.time_limit_s <= 0:
            raise ValueError(
                f"headroom={self.headroom} and swap_penalty={self.swap_penalty} must be >= 0, "
                f"time_limit_s={self.time_limit_s} > 0"
            )


def split_of(allocation: Allocation) -> Split:
    """The allocation's routing as replica weights (a device planned no traffic keeps a
    token weight, so the router may still use it)."""
    split: Split = {}
    for device, key in allocation.assignment.items():
        if key is None:
            continue
        family, variant = key
        rps = allocation.split.get(family, {}).get(device, 0.0)
        split.setdefault(family, {})[Replica(family, variant, device)] = max(rps, 1e-3)
    return split


class ControlPlane:
    def __init__(
        self,
        clock: Clock,
        devices: Sequence[DeviceSpec],
        variants: Callable[[], Sequence[VariantSpec]],
        slo_s: Callable[[str], float],
        solve: Callable[[Problem], Allocation],
        apply_split: Callable[[Split], None],
        runner: SolveRunner,
        config: ControllerConfig | None = None,
        estimator: DemandEstimator | None = None,
        settings: PlanningSettings | None = None,
        report: Callable[[str], None] | None = None,
        energy_budget: Callable[[str], float] | None = None,
    ) -> None:
        """`energy_budget(family)`: joules per request the family's plan must keep to
        (math.inf: none)."""
        self.energy_budget = energy_budget or (lambda family: math.inf)
        self.clock = clock
        self.devices = tuple(devices)
        self.variants = variants
        self.slo_s = slo_s
        self.solve = solve
        self.apply_split = apply_split
        self.runner = runner
        self.config = config or ControllerConfig()
        # follow rises fast (missed SLOs) and falls slowly (a few seconds of lower accuracy)
        self.estimator = estimator or DemandEstimator(alpha=0.3, alpha_up=0.8, burst_factor=1.3)
        self.settings = settings or PlanningSettings()
        self.report = report
        self.current: dict[str, tuple[str, str] | None] = {}
        self.controller: Controller | None = None
        self.listeners: list[Callable[[Allocation, bool], None]] = []  # (plan, changed)
        self._answered = 0
        self._late = 0

    # -- observation (the engine's RequestObserver protocol) -------------------------------
    def arrived(self, family: str, num_items: int, now_s: float) -> None:
        self.estimator.record(family, now_s, num_items)

    def answered(self, family: str, num_items: int, late: bool) -> None:
        self._answered += num_items
        self._late += num_items if late else 0

    def _violation_ratio(self) -> float:
        ratio = self._late / self._answered if self._answered else 0.0
        self._answered = self._late = 0
        return ratio

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.controller = Controller(
            clock=self.clock,
            estimator=self.estimator,
            build_problem=self.build_problem,
            solve=self.solve,
            apply=self.apply,
            runner=self.runner,
            config=self.config,
            violations=self._violation_ratio,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    def set_devices(self, devices: Sequence[DeviceSpec], reason: str) -> None:
        """Plan for these devices from now on (one was lost or came back): re-plan now."""
        self.devices = tuple(devices)
        names = {d.name for d in self.devices}
        self.current = {d: k for d, k in self.current.items() if d in names}
        if self.controller is not None:
            self.controller.request(reason)

    # -- problem and plan -------------------------------------------------------------------
    def build_problem(self, rates: Mapping[str, float]) -> Problem:
        variants = tuple(self.variants())
        planned = {v.family for v in variants}
        demand = tuple(
            FamilyDemand(family, rate, self.slo_s(family), max_energy_j=self.energy_budget(family))
            for family, rate in sorted(rates.items())
            if family in planned
        )
        names = {d.name for d in self.devices}
        keys = {v.key for v in variants}
        current = {
            d: k for d, k in self.current.items() if k is not None and d in names and k in keys
        }
        return Problem(
            self.devices,
            variants,
            demand,
            current=current,
            headroom=self.settings.headroom,
            headroom_cost=self.settings.headroom_cost,
            swap_penalty=self.settings.swap_penalty,
            time_limit_s=self.settings.time_limit_s,
            weighting=self.settings.weighting,
            batch_budget_fraction=self.settings.batch_budget_fraction,
        )

    def apply(self, allocation: Allocation) -> None:
        changed = allocation.assignment != self.current
        if self.report is not None and changed:
            self.report(self._describe(allocation))
        for listener in self.listeners:
            listener(allocation, changed)
        names = {d.name for d in self.devices}  # a solve may outlive a device it planned for
        self.current = {d: k for d, k in allocation.assignment.items() if d in names}
        self.apply_split(split_of(allocation))

    def _describe(self, allocation: Allocation) -> str:
        event = self.controller.log[-1] if self.controller and self.controller.log else None
        devices = ", ".join(
            f"{d} -> {'.'.join(k) if k else 'idle'}" for d, k in allocation.assignment.items()
        )
        why = (
            f" ({event.reason}; solved in {allocation.solve_time_s * 1e3:.0f} ms)" if event else ""
        )
        return f"plan: {devices}{why}"

    def status(self) -> dict[str, Any]:
        """The current assignment and the controller's recent decisions (for the API)."""
        events = self.controller.log[-20:] if self.controller else []
        return {
            "planner": getattr(self.solve, "__qualname__", str(self.solve)).split(".")[0],
            "assignment": {d: ".".join(k) if k else None for d, k in self.current.items()},
            "events": [
                {
                    "time_s": e.time_s,
                    "reason": e.reason,
                    "rates_rps": e.rates_rps,
                    "solve_time_s": e.allocation.solve_time_s if e.allocation else None,
                    "assignment": {
                        d: ".".join(k) if k else None for d, k in e.allocation.assignment.items()
                    }
                    if e.allocation
                    else None,
                    "status": e.allocation.status if e.allocation else "solving",
                }
                for e in events
            ],
        }
