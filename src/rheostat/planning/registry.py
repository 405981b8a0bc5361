"""Planners by name: a config or CLI flag picks one through `make_planner`."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from rheostat.planning.exhaustive import ExhaustivePlanner
from rheostat.planning.greedy import GreedyPlanner
from rheostat.planning.milp import MilpPlanner
from rheostat.planning.problem import Allocation, Problem

__all__ = ["Planner", "PlannerName", "make_planner"]


class PlannerName(StrEnum):
    MILP = "milp"
    GREEDY = "greedy"
    EXHAUSTIVE = "exhaustive"  # tiny instances only (tests)


class Planner(Protocol):
    def solve(self, problem: Problem) -> Allocation:
        """Which variant each device runs and how each family's load is split."""
        ...


_PLANNERS: dict[PlannerName, Callable[[], Planner]] = {
    PlannerName.MILP: MilpPlanner,
    PlannerName.GREEDY: GreedyPlanner,
    PlannerName.EXHAUSTIVE: ExhaustivePlanner,
}


def make_planner(name: PlannerName | str) -> Planner:
    try:
        key = PlannerName(name)
    except ValueError:
        choices = ", ".join(p.value for p in PlannerName)
        raise ValueError(f"unknown planner {name!r}; choose one of: {choices}") from None
    return _PLANNERS[key]()
