"""Planners of the systems rheostat is compared with, on the shared `Problem`/`Allocation`.

- `InfaasPlanner` (INFaaS, ATC'21, as Proteus' comparison runs it): no global optimisation.
  Starting from the current assignment, each family on its own scales **up** when its
  capacity is below `rate * (1 + slack)` (take an idle device with the family's most
  accurate variant that fits, or, with no idle device, switch its slowest device to a
  faster variant) and scales **down** when its capacity exceeds `rate / downscale_slack`
  (release a device, or switch one to a more accurate variant, as long as capacity stays
  above the target). Families are visited by decreasing demand; a family never takes a
  device from another.
- `FixedPlacementPlanner` (Sommelier-style): the devices of each family are fixed (taken
  from the first plan); variants may change. The inner planner solves one sub-problem per
  family on that family's devices.
- `restrict_variants`: keep one variant per family (Clipper-HT: the least accurate, Clipper-HA:
  the most accurate), so any planner places just that variant.

All of them are pure functions of the `Problem` (which carries the current assignment).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import StrEnum

from rheostat.clock import Stopwatch
from rheostat.planning.problem import (
    Allocation,
    Option,
    Problem,
    VariantKey,
    VariantSpec,
    allocation_from_assignment,
)

__all__ = ["FixedPlacementPlanner", "InfaasPlanner", "VariantChoice", "restrict_variants"]


class VariantChoice(StrEnum):
    ALL = "all"
    LEAST_ACCURATE = "least_accurate"
    MOST_ACCURATE = "most_accurate"


def restrict_variants(
    variants: tuple[VariantSpec, ...], choice: VariantChoice
) -> tuple[VariantSpec, ...]:
    if choice is VariantChoice.ALL:
        return variants
    pick = min if choice is VariantChoice.LEAST_ACCURATE else max
    chosen: dict[str, VariantSpec] = {}
    for family in sorted({v.family for v in variants}):
        mine = [v for v in variants if v.family == family]
        chosen[family] = pick(mine, key=lambda v: (v.accuracy, v.name))
    return tuple(v for v in variants if chosen[v.family] is v)


@dataclasses.dataclass(frozen=True)
class InfaasPlanner:
    slack: float = 0.05
    downscale_slack: float = 0.6

    def solve(self, problem: Problem) -> Allocation:
        with Stopwatch() as watch:
            state = _Infaas(problem)
            for demand in sorted(problem.demand, key=lambda d: -d.rate_rps):
                self._scale(state, demand.family, demand.rate_rps)
            assignment = {
                d.name: (o.key if (o := state.chosen.get(d.name)) else None)
                for d in problem.devices
            }
            allocation = allocation_from_assignment(problem, assignment, "infaas")
        return dataclasses.replace(allocation, solve_time_s=watch.elapsed_s)

    def _scale(self, state: _Infaas, family: str, rate: float) -> None:
        for _ in range(len(state.problem.devices) * 8):  # each step changes one device
            capacity = state.capacity(family)
            if capacity < rate * (1 + self.slack):
                if not state.scale_up(family):
                    return
            elif capacity * self.downscale_slack > rate:
                if not state.scale_down(family, rate * (1 + self.slack)):
                    return
            else:
                return


class _Infaas:
    """The assignment INFaaS edits, with each device's options looked up once."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        by_type = {t: problem.options(t) for t in problem.device_counts()}
        self.options = {d.name: by_type[d.device_type] for d in problem.devices}
        self.chosen: dict[str, Option] = {}
        for device, key in problem.current.items():
            option = self.option(device, key)
            if option is not None:
                self.chosen[device] = option

    def option(self, device: str, key: VariantKey) -> Option | None:
        return next((o for o in self.options.get(device, ()) if o.key == key), None)

    def family_options(self, device: str, family: str) -> list[Option]:
        return [o for o in self.options[device] if o.family == family]

    def capacity(self, family: str) -> float:
        return sum(o.capacity.rps for o in self.chosen.values() if o.family == family)

    def mine(self, family: str) -> list[str]:
        return [d for d, o in self.chosen.items() if o.family == family]

    def scale_up(self, family: str) -> bool:
        """Add an idle device (most accurate variant), else make the slowest one faster."""
        for device in (d.name for d in self.problem.devices if d.name not in self.chosen):
            options = self.family_options(device, family)
            if options:
                self.chosen[device] = max(options, key=lambda o: o.accuracy)
                return True
        for device in sorted(self.mine(family), key=lambda d: self.chosen[d].capacity.rps):
            now = self.chosen[device].capacity.rps
            faster = [o for o in self.family_options(device, family) if o.capacity.rps > now]
            if faster:  # the smallest step down in accuracy that is faster
                self.chosen[device] = max(faster, key=lambda o: o.accuracy)
                return True
        return False

    def scale_down(self, family: str, target: float) -> bool:
        """Release a device, else make one more accurate, keeping capacity >= target."""
        mine = self.mine(family)
        capacity = self.capacity(family)
        for device in mine:
            if len(mine) > 1 and capacity - self.chosen[device].capacity.rps >= target:
                del self.chosen[device]
                return True
        for device in mine:
            current = self.chosen[device]
            for better in self.family_options(device, family):
                after = capacity - current.capacity.rps + better.capacity.rps
                if better.accuracy > current.accuracy and after >= target:
                    self.chosen[device] = better
                    return True
        return False


@dataclasses.dataclass
class FixedPlacementPlanner:
    """Sommelier-style: each device keeps the family it was first given."""

    inner: Callable[[Problem], Allocation]
    placement: dict[str, str] = dataclasses.field(default_factory=dict)  # device -> family

    def solve(self, problem: Problem) -> Allocation:
        if not self.placement:
            first = self.inner(problem)
            self.placement = {d: k[0] for d, k in first.assignment.items() if k is not None}
            return first
        with Stopwatch() as watch:
            assignment: dict[str, VariantKey | None] = {d.name: None for d in problem.devices}
            for demand in problem.demand:
                devices = tuple(
                    d for d in problem.devices if self.placement.get(d.name) == demand.family
                )
                if not devices:
                    continue
                sub = dataclasses.replace(
                    problem,
                    devices=devices,
                    variants=tuple(v for v in problem.variants if v.family == demand.family),
                    demand=(demand,),
                    current={
                        d: k
                        for d, k in problem.current.items()
                        if any(x.name == d for x in devices) and k[0] == demand.family
                    },
                )
                for device, key in self.inner(sub).assignment.items():
                    assignment[device] = key
            allocation = allocation_from_assignment(problem, assignment, "fixed_placement")
        return dataclasses.replace(allocation, solve_time_s=watch.elapsed_s)
