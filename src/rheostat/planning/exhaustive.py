"""Exhaustive search over assignments: the optimality oracle for tests on tiny instances.

Every device gets each of its options or stays idle; each assignment's split is the closed
form of `allocation_from_assignment` (optimal for a fixed assignment) and is scored by
`objective`, the same lexicographic score the MILP optimises: the best served score first,
then, among assignments within `served_floor` of it, the best accuracy score (swap
penalty included). Ties go to the first assignment enumerated, so results are deterministic.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from rheostat.clock import Stopwatch
from rheostat.planning.problem import (
    Allocation,
    Objective,
    Option,
    Problem,
    allocation_from_assignment,
    objective,
    served_floor,
)

__all__ = ["MAX_ASSIGNMENTS", "ExhaustivePlanner"]

MAX_ASSIGNMENTS = 100_000
"""Largest search space the planner accepts; beyond it, use the MILP."""


class ExhaustivePlanner:
    """Enumerates every assignment; only for tiny instances (tests)."""

    def solve(self, problem: Problem) -> Allocation:
        with Stopwatch() as watch:
            best = _search(problem)
        return dataclasses.replace(best, solve_time_s=watch.elapsed_s)


def _search(problem: Problem) -> Allocation:
    choices = [_choices(problem.options(d.device_type)) for d in problem.devices]
    size = math.prod(len(c) for c in choices)
    if size > MAX_ASSIGNMENTS:
        raise ValueError(f"{size} assignments exceed the exhaustive limit {MAX_ASSIGNMENTS}")
    scored = [
        (objective(problem, allocation), allocation)
        for allocation in (
            allocation_from_assignment(
                problem,
                dict(zip([d.name for d in problem.devices], keys, strict=True)),
                "exhaustive",
            )
            for keys in itertools.product(*choices)
        )
    ]
    return _lexicographic_best(scored)


def _choices(options: tuple[Option, ...]) -> list[tuple[str, str] | None]:
    return [None, *(o.key for o in options)]


def _lexicographic_best(scored: list[tuple[Objective, Allocation]]) -> Allocation:
    floor = served_floor(max(s.served for s, _ in scored))
    eligible = [(s, a) for s, a in scored if s.served >= floor]
    return max(eligible, key=lambda sa: sa[0].accuracy)[1]
