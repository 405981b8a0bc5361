"""Serving policies to compare: each one a configuration of the shared components.

A `PolicySpec` picks the planner, the variants it may use, how often it re-plans, the batch
policy, the routing and the admission ladder; the simulator (and, for rheostat's own, the
server) builds the same objects from it. No baseline has a code path of its own beyond its
planner (`rheostat.planning.baselines`).

| policy | planner | variants | re-plan | batching | routing |
|---|---|---|---|---|---|
| clipper_ht | MILP, once | least accurate | static | AIMD | split |
| clipper_ha | MILP, once | most accurate | static | AIMD | split |
| infaas | INFaaS scale up/down | all | every 10 s | deadline-aware | least loaded |
| sommelier | MILP, placement fixed | all | every 10 s | deadline-aware | split |
| proteus | MILP | all | every 10 s | deadline-aware | split |
| rheostat | MILP | all | on shifts, SLO misses, 10 s | deadline-aware + goodput | split + ladder |

Static plans are solved once for the trace's mean rates (Clipper is given that knowledge);
the others start from a plan for the first 10 s of the trace. Proteus' published settings
(`configs/zipf_exponential/*.json`): beta 1.05 (headroom 5 %), Sommelier beta 1.5, INFaaS
slack 0.05 and down-scale slack 0.6, solve interval 10 s; its simulator plans on median (p50)
latencies, and its planner has no cost for changing a device's variant (1e-4 here, a tie
breaker).

rheostat, measured against these on Proteus' cluster and traces (benchmarks/proteus_compare.py):
re-plans when a family's demand moves 15 %, when SLO violations pass 2 % or every 10 s
(never within 1 s); plans 25 % headroom but prices it (`headroom_cost=1`: spare capacity buys
accuracy first, so bursts do not cost accuracy for headroom's sake); weighs accuracy per
request, as the metric does; charges 0.01 per device swap, because a model load takes a
device out for a while; batches deadline-aware with a 5-ms margin and goodput shedding under
backlog; and lets a request fall back to another replica or a cheaper variant rather than
miss its deadline. Tried and dropped, because they cost more accuracy than they saved SLOs:
planning on the p90 profile, jumping the demand estimate on 1-s bursts, and buying headroom
before accuracy (a served-score weight on planned headroom, or k * sqrt(rate) headroom for
small families: both cost the bursty trace 6 to 10 points of max accuracy drop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from rheostat.control.controller import ControllerConfig
from rheostat.control.demand import DemandEstimator
from rheostat.control.plane import PlanningSettings
from rheostat.planning import Allocation, PlannerName, Problem, make_planner
from rheostat.planning.baselines import FixedPlacementPlanner, InfaasPlanner, VariantChoice
from rheostat.planning.problem import BATCH_BUDGET_FRACTION, AccuracyWeighting
from rheostat.repository.schema import BatchPolicyName, DynamicBatching
from rheostat.routing import RoutingName

__all__ = ["POLICIES", "PolicyName", "PolicySpec", "Replan", "policy"]


class Replan(StrEnum):
    STATIC = "static"  # one plan for the whole run
    PERIODIC = "periodic"  # every interval_s, whatever happens
    ADAPTIVE = "adaptive"  # on demand shifts and SLO misses, and every interval_s


class PolicyName(StrEnum):
    CLIPPER_HT = "clipper_ht"
    CLIPPER_HA = "clipper_ha"
    INFAAS = "infaas"
    SOMMELIER = "sommelier"
    PROTEUS = "proteus"
    RHEOSTAT = "rheostat"


@dataclass(frozen=True)
class PolicySpec:
    name: str
    planner: str = "milp"
    """`milp`, `greedy` or `infaas`."""
    variants: VariantChoice = VariantChoice.ALL
    fixed_placement: bool = False
    """Sommelier: each device keeps the family of the first plan."""
    replan: Replan = Replan.PERIODIC
    interval_s: float = 10.0
    min_interval_s: float = 1.0
    """Adaptive re-planning: never more often than this."""
    batching: BatchPolicyName = BatchPolicyName.DEADLINE_AWARE
    margin_ms: float = 0.0
    """Deadline-aware batching: time kept between a batch's expected end and its deadline."""
    shed_for_goodput: bool = False
    """Deadline-aware batching drops a blocking head under backlog (see batching.policy)."""
    routing: RoutingName = RoutingName.SPLIT
    ladder: bool = False
    headroom: float = 0.05
    swap_penalty: float = 1e-4
    """Planner's cost of changing a device's variant (a model load), in accuracy units."""
    headroom_cost: float = 0.0
    """1: spare capacity buys accuracy before headroom (see `Problem.headroom_cost`)."""
    """> 0: headroom is planned before accuracy is bought."""
    """Extra planned capacity of k * sqrt(rate) per family (small families are noisier)."""
    plan_on_tail: bool = False
    """Plan with the profile's tail latency (p90) rather than its median."""
    follow_bursts: bool = False
    alpha: float = 0.5
    """Demand EWMA weight of the newest 1-s bin."""
    max_batch_size: int = 16
    weighting: AccuracyWeighting = AccuracyWeighting.FAMILY
    """The planner's accuracy score: per family (the planner's default) or per request."""
    batch_budget: float = BATCH_BUDGET_FRACTION
    """Share of the SLO a planned batch may take (Proteus: half)."""

    def __post_init__(self) -> None:
        if self.planner not in {"milp", "greedy", "infaas"}:
            raise ValueError(
                f"policy {self.name}: planner {self.planner!r} is not milp, greedy or infaas"
            )
        if self.interval_s <= 0 or self.margin_ms < 0 or self.headroom < 0:
            raise ValueError(
                f"policy {self.name}: interval_s={self.interval_s} must be > 0, margin_ms="
                f"{self.margin_ms} and headroom={self.headroom} >= 0"
            )

    def dynamic_batching(self) -> DynamicBatching:
        return DynamicBatching(
            policy=self.batching,
            latency_margin_microseconds=round(self.margin_ms * 1000),
            shed_for_goodput=self.shed_for_goodput,
        )

    def planning_settings(self, time_limit_s: float) -> PlanningSettings:
        return PlanningSettings(
            headroom=self.headroom,
            swap_penalty=self.swap_penalty,
            headroom_cost=self.headroom_cost,
            time_limit_s=time_limit_s,
            weighting=self.weighting,
            batch_budget_fraction=self.batch_budget,
        )

    def make_solve(self) -> Callable[[Problem], Allocation]:
        inner = (
            InfaasPlanner() if self.planner == "infaas" else make_planner(PlannerName(self.planner))
        )
        if self.fixed_placement:
            return FixedPlacementPlanner(inner.solve).solve
        return inner.solve

    def controller_config(self) -> ControllerConfig:
        if self.replan is Replan.ADAPTIVE:
            return ControllerConfig(interval_s=self.interval_s, min_interval_s=self.min_interval_s)
        # periodic: no trigger but the interval
        return ControllerConfig(
            interval_s=self.interval_s, min_interval_s=self.interval_s, shift_threshold=1e12,
            violation_threshold=1.0,
        )  # fmt: skip

    def estimator(self) -> DemandEstimator:
        if self.follow_bursts:
            return DemandEstimator(alpha=0.3, alpha_up=0.8, burst_factor=1.3)
        return DemandEstimator(alpha=self.alpha, burst_factor=1e12)


POLICIES: dict[PolicyName, PolicySpec] = {
    PolicyName.CLIPPER_HT: PolicySpec(
        "clipper_ht", variants=VariantChoice.LEAST_ACCURATE, replan=Replan.STATIC,
        batching=BatchPolicyName.AIMD,
    ),
    PolicyName.CLIPPER_HA: PolicySpec(
        "clipper_ha", variants=VariantChoice.MOST_ACCURATE, replan=Replan.STATIC,
        batching=BatchPolicyName.AIMD,
    ),
    PolicyName.INFAAS: PolicySpec("infaas", planner="infaas", routing=RoutingName.LEAST_LOADED),
    PolicyName.SOMMELIER: PolicySpec("sommelier", fixed_placement=True, headroom=0.5),
    PolicyName.PROTEUS: PolicySpec("proteus"),
    PolicyName.RHEOSTAT: PolicySpec(
        "rheostat", replan=Replan.ADAPTIVE, margin_ms=5.0, ladder=True, headroom=0.25,
        headroom_cost=1.0, swap_penalty=0.01, weighting=AccuracyWeighting.REQUEST,
        shed_for_goodput=True,
    ),
}  # fmt: skip


def policy(name: str) -> PolicySpec:
    try:
        return POLICIES[PolicyName(name)]
    except ValueError:
        known = ", ".join(p.value for p in PolicyName)
        raise ValueError(f"unknown policy {name!r}; choose one of: {known}") from None
