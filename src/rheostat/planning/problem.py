"""The planning problem and its answer: pure data shared by every planner.

A `Problem` describes a cluster (devices), the variants of each family with their profiled
batch latencies per device type, and each family's demand. An `Allocation` says which
(family, variant) each device runs and how each family's requests are split over devices.

Capacity follows Proteus (ASPLOS'24, section 5): a batch may take at most
`BATCH_BUDGET_FRACTION` of the SLO, the rest being left for queueing, and a variant's
throughput on a device is the best `b / latency(b)` over the profiled batch sizes that fit.

Scoring is lexicographic, the same for every planner (see `Objective`):

1. served: sum over families of `priority_f * min(served_f, rate_f)`; headroom traffic
   (served beyond the estimated rate) is planned for but does not count as served;
2. accuracy: sum over families of `(sum over routed rps of accuracy) / rate_f`, i.e. each
   family's served traffic weighted by accuracy and normalised by its own rate, so every
   family counts equally whatever its volume; minus `swap_penalty` per device whose current
   (family, variant) changes. With `weighting=REQUEST` every request counts equally instead
   (the divisor is the mean rate over families, the same for all), which is what Proteus'
   effective-accuracy metric rewards.

Among allocations whose served score is within `LEXICOGRAPHIC_SLACK` of the best, the one with
the best accuracy score wins.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from rheostat.plan import Plan, Replica

__all__ = [
    "BATCH_BUDGET_FRACTION",
    "LEXICOGRAPHIC_ABS_SLACK",
    "LEXICOGRAPHIC_SLACK",
    "RATE_EPS_RPS",
    "SPARE_DEVICE_BONUS",
    "AccuracyWeighting",
    "Allocation",
    "Capacity",
    "DeviceSpec",
    "FamilyDemand",
    "Objective",
    "Option",
    "Problem",
    "VariantKey",
    "VariantSpec",
    "allocation_from_assignment",
    "best_throughput",
    "capacity",
    "finish_allocation",
    "num_swaps",
    "objective",
    "served_floor",
]

BATCH_BUDGET_FRACTION = 0.5
"""Share of the SLO a batch may spend processing; the rest is for queueing (Proteus)."""

LEXICOGRAPHIC_SLACK = 1e-6
"""Relative slack on the served score when the accuracy score is optimised second."""

LEXICOGRAPHIC_ABS_SLACK = 1e-9
"""Absolute slack on the served score (so a best score of 0 keeps every allocation)."""

SPARE_DEVICE_BONUS = 1e-4
"""Stage-2 bonus per device, times its variant's accuracy: breaks the tie among devices the
split leaves (nearly) idle in favour of the more accurate variant, so spare capacity serves
a burst at the best accuracy. Above the default gap (1e-4 of a score of O(1)) so HiGHS
honours it; a swap costs more than the largest bonus difference when `swap_penalty` >= 1e-4."""

RATE_EPS_RPS = 1e-9
"""Floor of a family's rate when normalising its accuracy term (zero-rate families)."""

VariantKey = tuple[str, str]
"""(family, variant)."""


class AccuracyWeighting(StrEnum):
    FAMILY = "family"  # every family counts equally, whatever its volume
    REQUEST = "request"  # every request counts equally


@dataclass(frozen=True)
class DeviceSpec:
    """One device of the cluster; devices of one `device_type` are identical."""

    name: str
    device_type: str  # e.g. "cpu", "1080ti", "v100"
    memory_mb: float = math.inf  # memory available to the one variant it runs
    active_w: float = 0.0  # power while busy; energy budgets are checked against it

    def __post_init__(self) -> None:
        if not self.name or not self.device_type:
            raise ValueError(f"device {self.name!r} needs a name and a device_type")
        if not self.memory_mb > 0:
            raise ValueError(f"device {self.name!r} memory_mb {self.memory_mb} must be > 0")


@dataclass(frozen=True)
class VariantSpec:
    """One variant of a family; no `latency_s` entry for a device type: cannot run there."""

    family: str
    name: str
    accuracy: float  # in [0, 1]
    latency_s: Mapping[str, Mapping[int, float]]  # device_type -> batch size -> tail latency
    memory_mb: float = 0.0

    def __post_init__(self) -> None:
        if not self.family or not self.name:
            raise ValueError(f"variant {self.family!r}.{self.name!r} needs a family and a name")
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"variant {self.key} accuracy {self.accuracy} must be in [0, 1]")
        if not 0.0 <= self.memory_mb < math.inf:
            raise ValueError(f"variant {self.key} memory_mb {self.memory_mb} must be >= 0")
        for device_type, points in self.latency_s.items():
            bad = {b: s for b, s in points.items() if b < 1 or not 0 < s < math.inf}
            if bad:
                raise ValueError(
                    f"variant {self.key} on {device_type!r}: points {bad} need batch >= 1 "
                    "and a finite latency > 0"
                )

    @property
    def key(self) -> VariantKey:
        return (self.family, self.name)


@dataclass(frozen=True)
class FamilyDemand:
    """What one family asks of the cluster."""

    family: str
    rate_rps: float  # estimated arrival rate
    slo_s: float  # latency SLO of the family's requests
    min_accuracy: float = 0.0  # variants below it are never planned
    priority: float = 1.0  # weight of serving this family's requests (higher: shed last)
    max_energy_j: float = math.inf  # joules per request (batch 1 at the device's active_w)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate_rps < math.inf:
            raise ValueError(f"family {self.family!r} rate_rps {self.rate_rps} must be >= 0")
        if not 0.0 < self.slo_s < math.inf:
            raise ValueError(f"family {self.family!r} slo_s {self.slo_s} must be > 0")
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ValueError(
                f"family {self.family!r} min_accuracy {self.min_accuracy} not in [0, 1]"
            )
        if not 0.0 < self.priority < math.inf:
            raise ValueError(f"family {self.family!r} priority {self.priority} must be > 0")
        if not self.max_energy_j > 0:
            raise ValueError(f"family {self.family!r} max_energy_j {self.max_energy_j} must be > 0")


@dataclass(frozen=True)
class Capacity:
    """Throughput of a variant on a device type under an SLO, and the batch achieving it."""

    rps: float
    batch_size: int  # 0 when even a batch of one misses the budget


@dataclass(frozen=True)
class Option:
    """A (family, variant) a device type may run for the current demand."""

    family: str
    variant: str
    accuracy: float
    capacity: Capacity

    @property
    def key(self) -> VariantKey:
        return (self.family, self.variant)


def capacity(
    variant: VariantSpec,
    device_type: str,
    slo_s: float,
    budget_fraction: float = BATCH_BUDGET_FRACTION,
) -> Capacity:
    """Best `b / latency(b)` over profiled batch sizes whose latency fits the batch budget."""
    return best_throughput(variant.latency_s.get(device_type, {}), slo_s * budget_fraction)


def best_throughput(points_s: Mapping[int, float], budget_s: float) -> Capacity:
    """Best `b / latency(b)` over the (batch size -> seconds) points that fit `budget_s`."""
    fitting = [(b / s, b) for b, s in points_s.items() if s <= budget_s]
    if not fitting:
        return Capacity(0.0, 0)
    rps, batch = max(fitting)
    return Capacity(rps, batch)


@dataclass(frozen=True)
class Problem:
    """One planning instance. `current` maps a device to the (family, variant) it runs now."""

    devices: tuple[DeviceSpec, ...]
    variants: tuple[VariantSpec, ...]
    demand: tuple[FamilyDemand, ...]
    current: Mapping[str, VariantKey] = field(default_factory=dict)
    headroom: float = 0.1  # plan capacity for rate * (1 + headroom)
    # In the accuracy score each planned rps of a family counts `a_v - headroom_cost * a_min`
    # (a_min: the family's least accurate variant). Served rps are fixed by then, so this
    # only prices headroom: at 1, headroom bought by downgrading variants is worth nothing
    # and spare capacity goes to accuracy first; at 0, headroom competes at full accuracy.
    headroom_cost: float = 0.0
    # Cost of changing one device's (family, variant), in accuracy-score units: one unit is
    # one family's whole rate served at accuracy 1.0, so 0.01 asks a swap to buy at least one
    # accuracy point on one family's traffic. Small, so it only breaks (near-)ties.
    swap_penalty: float = 0.01
    time_limit_s: float = 1.0  # solver budget (MILP)
    mip_rel_gap: float = 1e-4  # relative optimality gap at which the MILP may stop
    weighting: AccuracyWeighting = AccuracyWeighting.FAMILY
    batch_budget_fraction: float = BATCH_BUDGET_FRACTION  # share of the SLO a batch may take

    def __post_init__(self) -> None:
        self._check_names()
        self._check_current()
        if not 0.0 <= self.headroom < math.inf:
            raise ValueError(f"headroom {self.headroom} must be >= 0")
        if not 0.0 <= self.headroom_cost <= 1.0:
            raise ValueError(f"headroom_cost {self.headroom_cost} must be in [0, 1]")
        if not 0.0 <= self.swap_penalty < math.inf:
            raise ValueError(f"swap_penalty {self.swap_penalty} must be >= 0")
        if not 0.0 < self.time_limit_s < math.inf:
            raise ValueError(f"time_limit_s {self.time_limit_s} must be > 0")
        if not 0.0 < self.batch_budget_fraction <= 1.0:
            raise ValueError(f"batch_budget_fraction {self.batch_budget_fraction} not in (0, 1]")
        if not 0.0 <= self.mip_rel_gap < 1.0:
            raise ValueError(f"mip_rel_gap {self.mip_rel_gap} must be in [0, 1)")

    def _check_names(self) -> None:
        _no_duplicates("device names", (d.name for d in self.devices))
        _no_duplicates("variants", (v.key for v in self.variants))
        _no_duplicates("demand families", (d.family for d in self.demand))
        memory: dict[str, float] = {}
        for d in self.devices:
            if memory.setdefault(d.device_type, d.memory_mb) != d.memory_mb:
                raise ValueError(f"devices of type {d.device_type!r} differ in memory_mb")
        families = {v.family for v in self.variants}
        missing = sorted(d.family for d in self.demand if d.family not in families)
        if missing:
            raise ValueError(f"demand for families with no variant: {missing}")

    def _check_current(self) -> None:
        names = {d.name for d in self.devices}
        keys = {v.key for v in self.variants}
        unknown = sorted(d for d in self.current if d not in names)
        if unknown:
            raise ValueError(f"current names unknown devices: {unknown}")
        bad = sorted(k for k in self.current.values() if k not in keys)
        if bad:
            raise ValueError(f"current names unknown (family, variant) pairs: {bad}")

    def demand_of(self, family: str) -> FamilyDemand:
        return next(d for d in self.demand if d.family == family)

    def target_rps(self, family: str) -> float:
        """The rate to plan capacity for: rate * (1 + headroom)."""
        return self.demand_of(family).rate_rps * (1.0 + self.headroom)

    def device_counts(self) -> dict[str, int]:
        """Number of devices per type, in first-seen order."""
        return dict(Counter(d.device_type for d in self.devices))

    def options(self, device_type: str) -> tuple[Option, ...]:
        """Variants a device type may run: demanded family, capacity > 0, accuracy, memory
        and energy fit. Ordered by family (demand order), then accuracy, best first."""
        device = next(d for d in self.devices if d.device_type == device_type)
        memory = device.memory_mb
        found = [
            Option(
                v.family,
                v.name,
                v.accuracy,
                capacity(v, device_type, dem.slo_s, self.batch_budget_fraction),
            )
            for dem in self.demand
            for v in sorted(self.variants, key=lambda v: (-v.accuracy, v.name))
            if v.family == dem.family and v.accuracy >= dem.min_accuracy and v.memory_mb <= memory
            and _energy_j(v, device) <= dem.max_energy_j
        ]  # fmt: skip
        return tuple(o for o in found if o.capacity.rps > 0)

    def accuracy_divisor(self, family: str) -> float:
        """What a family's accuracy-weighted rps is divided by in the accuracy score."""
        if self.weighting is AccuracyWeighting.REQUEST:
            mean = sum(d.rate_rps for d in self.demand) / max(len(self.demand), 1)
            return max(mean, RATE_EPS_RPS)
        return max(self.demand_of(family).rate_rps, RATE_EPS_RPS)

    def accuracy_baseline(self, family: str) -> float:
        """What every planned rps of `family` is charged in the accuracy score."""
        if self.headroom_cost == 0.0:
            return 0.0
        lowest = min((v.accuracy for v in self.variants if v.family == family), default=0.0)
        return self.headroom_cost * lowest

    def accuracy_of(self, key: VariantKey) -> float:
        return next(v.accuracy for v in self.variants if v.key == key)


def _energy_j(variant: VariantSpec, device: DeviceSpec) -> float:
    """Joules of one request run alone (0 when the device's power is unknown)."""
    points = variant.latency_s.get(device.device_type)
    if not points or device.active_w <= 0:
        return 0.0
    return device.active_w * points[min(points)] / min(points)


def served_floor(best_served: float) -> float:
    """Lowest served score still counted as lexicographically tied with `best_served`."""
    return best_served * (1.0 - LEXICOGRAPHIC_SLACK) - LEXICOGRAPHIC_ABS_SLACK


def _no_duplicates(what: str, items: Iterable[object]) -> None:
    dup = sorted(str(k) for k, n in Counter(items).items() if n > 1)
    if dup:
        raise ValueError(f"duplicate {what}: {dup}")


@dataclass(frozen=True)
class Objective:
    """Lexicographic score of an allocation: `served` first, then `accuracy`."""

    served: float
    accuracy: float


@dataclass(frozen=True)
class Allocation:
    """A planner's answer."""

    assignment: Mapping[str, VariantKey | None]  # device -> (family, variant), None: idle
    split: Mapping[str, Mapping[str, float]]  # family -> device -> rps routed there
    batch_cap: Mapping[str, int]  # assigned device -> batch of its capacity (fits the budget)
    served_rps: Mapping[str, float]  # family -> planned served rate (<= rate*(1+headroom))
    effective_accuracy: Mapping[str, float]  # family -> rps-weighted accuracy (0 if none)
    solve_time_s: float
    status: str  # "optimal", "time_limit", "greedy", "greedy_fallback", "exhaustive"

    def __post_init__(self) -> None:
        for family, routes in self.split.items():
            bad = {d: r for d, r in routes.items() if r < 0 or self._family_on(d) != family}
            if bad:
                raise ValueError(
                    f"split of {family!r} routes {bad} to other families' devices or < 0"
                )

    def _family_on(self, device: str) -> str | None:
        key = self.assignment.get(device)
        return None if key is None else key[0]

    def to_plan(self) -> Plan:
        """Replicas = assigned devices; split weights = planned rps. A family planned no
        traffic gets weight 1 on each of its replicas (a Plan needs a positive weight)."""
        replicas = {
            Replica(key[0], key[1], device)
            for device, key in self.assignment.items()
            if key is not None
        }
        split: dict[str, dict[Replica, float]] = {}
        for family in sorted({r.family for r in replicas}):
            mine = [r for r in replicas if r.family == family]
            routes = self.split.get(family, {})
            weights = {r: routes.get(r.device, 0.0) for r in mine}
            positive = {r: w for r, w in weights.items() if w > 0}
            split[family] = positive or dict.fromkeys(mine, 1.0)
        return Plan(frozenset(replicas), split)


def num_swaps(problem: Problem, assignment: Mapping[str, VariantKey | None]) -> int:
    """Devices whose current (family, variant) changes (an idle device never counts)."""
    return sum(1 for d, key in problem.current.items() if assignment.get(d) != key)


def objective(problem: Problem, allocation: Allocation) -> Objective:
    """The lexicographic score every planner optimises (see the module docstring)."""
    served = accuracy = 0.0
    for dem in problem.demand:
        routes = allocation.split.get(dem.family, {})
        total = sum(routes.values())
        served += dem.priority * min(total, dem.rate_rps)
        baseline = problem.accuracy_baseline(dem.family)
        weighted = sum(
            rps * (_accuracy_at(problem, allocation, d) - baseline) for d, rps in routes.items()
        )
        accuracy += weighted / problem.accuracy_divisor(dem.family)
    assigned = (k for k in allocation.assignment.values() if k is not None)
    accuracy += SPARE_DEVICE_BONUS * sum(problem.accuracy_of(k) for k in assigned)
    swaps = num_swaps(problem, allocation.assignment)
    return Objective(served, accuracy - problem.swap_penalty * swaps)


def _accuracy_at(problem: Problem, allocation: Allocation, device: str) -> float:
    key = allocation.assignment[device]
    return 0.0 if key is None else problem.accuracy_of(key)


def allocation_from_assignment(
    problem: Problem, assignment: Mapping[str, VariantKey | None], status: str
) -> Allocation:
    """The best split for a fixed assignment, in closed form: per family, fill its devices
    in decreasing accuracy up to rate * (1 + headroom). This maximises both scores (a
    fractional knapsack). Every assigned (family, variant) must be an option of its device."""
    options = _device_options(problem, assignment)
    split: dict[str, dict[str, float]] = {}
    for dem in problem.demand:
        mine = sorted(
            ((o.accuracy, d) for d, o in options.items() if o.family == dem.family),
            key=lambda t: (-t[0], t[1]),
        )
        left = problem.target_rps(dem.family)
        routes = split.setdefault(dem.family, {})
        for _, device in mine:
            routes[device] = min(options[device].capacity.rps, left)
            left -= routes[device]
    return _finish(problem, assignment, split, options, status)


def _device_options(
    problem: Problem, assignment: Mapping[str, VariantKey | None]
) -> dict[str, Option]:
    options: dict[str, Option] = {}
    for device in problem.devices:
        key = assignment.get(device.name)
        if key is None:
            continue
        match = [o for o in problem.options(device.device_type) if o.key == key]
        if not match:
            raise ValueError(f"{key} is not a feasible option on device {device.name!r}")
        options[device.name] = match[0]
    return options


def _finish(
    problem: Problem,
    assignment: Mapping[str, VariantKey | None],
    split: Mapping[str, Mapping[str, float]],
    options: Mapping[str, Option],
    status: str,
) -> Allocation:
    """Assemble an Allocation: served rates, effective accuracies and batch caps. The
    planner sets `solve_time_s` once it has measured it."""
    served = {f: sum(r.values()) for f, r in split.items()}
    accuracy = {
        f: sum(rps * options[d].accuracy for d, rps in r.items()) / served[f] if served[f] else 0.0
        for f, r in split.items()
    }
    full = {d.name: assignment.get(d.name) for d in problem.devices}
    caps = {d: o.capacity.batch_size for d, o in options.items()}
    return Allocation(full, split, caps, served, accuracy, 0.0, status)


def finish_allocation(
    problem: Problem,
    assignment: Mapping[str, VariantKey | None],
    split: Mapping[str, Mapping[str, float]],
    status: str,
) -> Allocation:
    """An Allocation from an assignment and a split computed elsewhere (the MILP)."""
    options = _device_options(problem, assignment)
    return _finish(problem, assignment, split, options, status)
