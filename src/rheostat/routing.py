"""Routing: which replica serves a request, per the current plan.

`Router.candidates` is a pure function of the plan, the request's constraints and the
router's own rotation state: it returns replicas in the order they should be tried. Replicas
in the family's split come first, ordered by smooth weighted round-robin (nginx's scheme:
each pick adds every weight to its counter, takes the largest, subtracts the total) so the
long-run shares equal the plan's weights with no randomness. When no replica of the split
satisfies the request (a pinned variant, a minimum accuracy, an excluded device), the other
loaded replicas that do follow, cheapest adequate variant first.

A request may *prefer* a variant (an edge client's mapped one, `Constraints.prefer`): the
replicas of that variant come first, the least loaded first when the router has a load view
(`balance`), then the cheaper variants as the degrade ladder; never a more accurate one,
whose cost the client mapping did not plan for.

With `RoutingName.LEAST_LOADED` (INFaaS) the split's replicas are ordered by a load view
the mechanism provides (expected finish time of a request queued now) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from rheostat.plan import Plan, Replica

__all__ = ["Constraints", "Router", "RoutingName"]


class RoutingName(StrEnum):
    SPLIT = "split"  # smooth weighted round-robin over the plan's split
    LEAST_LOADED = "least_loaded"  # the planned replica that would finish soonest


@dataclass(frozen=True)
class Constraints:
    variant: str | None = None  # pinned
    min_accuracy: float = 0.0
    exclude_devices: frozenset[str] = frozenset()
    max_energy_j: float | None = None  # per inference (row), by the replica's `energy`
    prefer: str | None = None  # a variant to try first (see the module notes)


class Router:
    def __init__(
        self,
        plan: Plan,
        accuracy: Mapping[str, float],
        load: Callable[[Replica], float] | None = None,
        energy: Mapping[Replica, float] | None = None,
        balance: Callable[[Replica], float] | None = None,
    ) -> None:
        """`accuracy` maps `family.variant` to its accuracy; with `load`, route to the
        least loaded replica of the split rather than by its weights. `energy` (joules of a
        request on a replica, kept up to date by its owner) is what energy budgets are
        checked against; a replica without an entry fits any budget. `balance` (a load view,
        as `load`) orders the replicas of a preferred variant."""
        self.plan = plan
        self.accuracy = dict(accuracy)
        self.load = load
        self.energy = energy if energy is not None else {}
        self.balance = balance
        self._current: dict[Replica, float] = {}

    def set_plan(self, plan: Plan) -> None:
        self.plan = plan
        self._current = {}

    def _fits(self, replica: Replica, c: Constraints) -> bool:
        return (
            (c.variant is None or replica.variant == c.variant)
            and self.accuracy.get(replica.key, 0.0) >= c.min_accuracy
            and replica.device not in c.exclude_devices
            and (c.max_energy_j is None or self.energy.get(replica, 0.0) <= c.max_energy_j)
        )

    def _rotate(self, weights: Mapping[Replica, float]) -> list[Replica]:
        """One smooth-WRR pick; returns all replicas, the pick first."""
        total = sum(weights.values())
        for replica, weight in weights.items():
            self._current[replica] = self._current.get(replica, 0.0) + weight
        pick = max(weights, key=lambda r: (self._current[r], r))
        self._current[pick] -= total
        rest = sorted((r for r in weights if r != pick), key=lambda r: -weights[r])
        return [pick, *rest]

    def candidates(self, family: str, constraints: Constraints = Constraints()) -> list[Replica]:
        if constraints.prefer is not None and constraints.variant is None:
            preferred = self._preferred(family, constraints, constraints.prefer)
            if preferred:
                return preferred
        split = self.plan.split.get(family, {})
        eligible = {r: w for r, w in split.items() if w > 0 and self._fits(r, constraints)}
        ordered: list[Replica] = []
        if eligible:
            ordered = (
                self._rotate(eligible) if self.load is None else sorted(eligible, key=self.load)
            )
        others = [
            r
            for r in self.plan.of_family(family)
            if r not in eligible and self._fits(r, constraints)
        ]
        load = self.balance or (lambda r: 0.0)
        if not ordered:  # the least loaded replica of the cheapest adequate variant first
            others.sort(key=lambda r: (self.accuracy.get(r.key, 0.0), load(r), r))
            return others
        planned = {o.variant for o in ordered}
        same = sorted((r for r in others if r.variant in planned), key=lambda r: (load(r), r))
        floor = min(self.accuracy.get(o.key, 0.0) for o in ordered)
        # the degrade ladder: cheaper variants, the most accurate first
        cheaper = sorted(
            (r for r in others if self.accuracy.get(r.key, 0.0) < floor),
            key=lambda r: (-self.accuracy.get(r.key, 0.0), r),
        )
        return ordered + same + cheaper

    def _preferred(self, family: str, constraints: Constraints, prefer: str) -> list[Replica]:
        """The preferred variant's replicas (least loaded first), then cheaper variants."""
        fits = [r for r in self.plan.of_family(family) if self._fits(r, constraints)]
        load = self.balance or (lambda r: 0.0)
        mine = sorted((r for r in fits if r.variant == prefer), key=lambda r: (load(r), r))
        if not mine:
            return []
        top = self.accuracy.get(mine[0].key, 0.0)
        cheaper = sorted(
            (r for r in fits if self.accuracy.get(r.key, 0.0) < top),
            key=lambda r: (-self.accuracy.get(r.key, 0.0), load(r), r),
        )
        return mine + cheaper

    def best_variant(self, family: str) -> tuple[str, float] | None:
        scores = [(self.accuracy.get(r.key, 0.0), r.variant) for r in self.plan.of_family(family)]
        if not scores:
            return None
        accuracy, variant = max(scores)
        return variant, accuracy

    def families(self) -> Sequence[str]:
        return sorted({r.family for r in self.plan.replicas})
