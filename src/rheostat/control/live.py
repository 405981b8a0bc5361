"""The control plane wired to the live engine.

`LiveControl` observes every request (demand per family, late answers), builds a planning
`Problem` from what the engine measured (each replica's latency profile on its device) and
applies the planner's `Allocation` as the engine's traffic split. Solves run in a thread, so
the server keeps serving on the old plan while HiGHS works.

The planner sees each replica's latency as measured at load time, not the online-corrected
profile the batch policy uses: that one only learns from batches that run, so a variant the
plan dropped under contention would look slow for ever and never come back. Load-time
profiles are medians and the planner wants tail latency, so they are scaled by
`TAIL_FACTOR`; a measured p99 profile from `rheostat profile` replaces this estimate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from rheostat.control.controller import Controller, ControllerConfig
from rheostat.control.demand import DemandEstimator
from rheostat.engine import Engine
from rheostat.plan import Replica
from rheostat.planning import (
    Allocation,
    DeviceSpec,
    FamilyDemand,
    PlannerName,
    Problem,
    VariantSpec,
    make_planner,
)

__all__ = ["HEADROOM", "SWAP_PENALTY", "TAIL_FACTOR", "LiveControl", "ThreadSolveRunner"]

TAIL_FACTOR = 1.5
"""Tail (p99) over median batch latency assumed when only medians are known."""

SWAP_PENALTY = 1e-4
"""Every variant stays loaded, so changing a device's variant only changes the split: a
token penalty that breaks ties toward the current plan without keeping a worse one (the
accuracy of EfficientNet-Lite1 and -Lite2 differs by 0.008, less than the planner's default
penalty of 0.01 per device)."""

HEADROOM = 0.25
"""Capacity planned above the estimated rate: rates are estimates, and on a small machine
the HTTP front end and the clients share the devices' cores, which the profiles (taken on
idle cores) do not see."""


class ThreadSolveRunner:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def submit(
        self, solve: Callable[[], Allocation], on_done: Callable[[Allocation], None]
    ) -> None:
        future = self.loop.run_in_executor(None, solve)
        future.add_done_callback(lambda f: None if f.cancelled() else on_done(f.result()))


def device_type(engine: Engine, device: str) -> str:
    return next(d for d in engine.config.devices if d.name == device).device_type


class LiveControl:
    def __init__(
        self,
        engine: Engine,
        planner: PlannerName = PlannerName.MILP,
        config: ControllerConfig | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.report = report
        self.planner = make_planner(planner)
        # follow rises fast (missed SLOs) and falls slowly (a few seconds of lower accuracy)
        self.estimator = DemandEstimator(alpha=0.3, alpha_up=0.8, burst_factor=1.3)
        self.config = config or ControllerConfig()
        self.current: dict[str, tuple[str, str] | None] = {}
        self._answered = 0
        self._late = 0
        self.controller: Controller | None = None

    # -- RequestObserver --------------------------------------------------------------------
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
        self.engine.observers.append(self)
        self.controller = Controller(
            clock=self.engine.clock,
            estimator=self.estimator,
            build_problem=self.build_problem,
            solve=self.planner.solve,
            apply=self.apply,
            runner=ThreadSolveRunner(self.engine.clock.loop),
            config=self.config,
            violations=self._violation_ratio,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    # -- problem and plan -------------------------------------------------------------------
    def build_problem(self, rates: Mapping[str, float]) -> Problem:
        engine = self.engine
        devices = tuple(
            DeviceSpec(d.name, device_type(engine, d.name)) for d in engine.config.devices
        )
        latency: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
        for replica, base in engine.base_profiles.items():
            points = engine.tail_profiles.get(replica) or {
                b: s * TAIL_FACTOR for b, s in base.items()
            }
            per_type = latency.setdefault((replica.family, replica.variant), {})
            per_type.setdefault(device_type(engine, replica.device), points)
        families = engine.repository.families
        variants = tuple(
            VariantSpec(family, name, families[family].config.variants[name].accuracy, points)
            for (family, name), points in sorted(latency.items())
        )
        planned = {v.family for v in variants}
        demand = tuple(
            FamilyDemand(family, rate, families[family].config.slo_ms / 1e3)
            for family, rate in sorted(rates.items())
            if family in planned
        )
        current = {d: k for d, k in self.current.items() if k is not None}
        return Problem(
            devices, variants, demand, current=current, headroom=HEADROOM,
            swap_penalty=SWAP_PENALTY,
        )  # fmt: skip

    def apply(self, allocation: Allocation) -> None:
        if self.report is not None and allocation.assignment != self.current:
            event = self.controller.log[-1] if self.controller and self.controller.log else None
            devices = ", ".join(
                f"{d} -> {'.'.join(k) if k else 'idle'}" for d, k in allocation.assignment.items()
            )
            why = (
                f" ({event.reason}; solved in {allocation.solve_time_s * 1e3:.0f} ms)"
                if event
                else ""
            )
            self.report(f"plan: {devices}{why}")
        self.current = dict(allocation.assignment)
        split: dict[str, dict[Replica, float]] = {}
        for device, key in allocation.assignment.items():
            if key is None:
                continue
            family, variant = key
            rps = allocation.split.get(family, {}).get(device, 0.0)
            split.setdefault(family, {})[Replica(family, variant, device)] = max(rps, 1e-3)
        self.engine.set_split(split)

    def status(self) -> dict[str, Any]:
        """The current assignment and the controller's recent decisions (for the API)."""
        events = self.controller.log[-20:] if self.controller else []
        return {
            "planner": type(self.planner).__name__,
            "assignment": {d: ".".join(k) if k else None for d, k in self.current.items()},
            "events": [
                {
                    "time_s": e.time_s,
                    "reason": e.reason,
                    "rates_rps": e.rates_rps,
                    "solve_time_s": e.allocation.solve_time_s if e.allocation else None,
                    "status": e.allocation.status if e.allocation else "solving",
                }
                for e in events
            ],
        }
