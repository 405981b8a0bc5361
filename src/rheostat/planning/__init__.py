"""Planning: which variant runs on which device, and how each family's load is split.

`Problem` in, `Allocation` out (`problem.py`); planners behind one `Planner` protocol, picked
by `PlannerName` (`registry.py`): the MILP on HiGHS (`milp.py`), a greedy heuristic that is
also its fallback (`greedy.py`), and an exhaustive search for tests (`exhaustive.py`).
`load_proteus_profiles` reads Proteus' published profiles for comparisons.
"""

from rheostat.planning.exhaustive import ExhaustivePlanner
from rheostat.planning.greedy import GreedyPlanner
from rheostat.planning.milp import MilpPlanner
from rheostat.planning.problem import (
    BATCH_BUDGET_FRACTION,
    Allocation,
    Capacity,
    DeviceSpec,
    FamilyDemand,
    Objective,
    Problem,
    VariantSpec,
    capacity,
    objective,
)
from rheostat.planning.proteus_profiles import load_proteus_profiles
from rheostat.planning.registry import Planner, PlannerName, make_planner

__all__ = [
    "BATCH_BUDGET_FRACTION",
    "Allocation",
    "Capacity",
    "DeviceSpec",
    "ExhaustivePlanner",
    "FamilyDemand",
    "GreedyPlanner",
    "MilpPlanner",
    "Objective",
    "Planner",
    "PlannerName",
    "Problem",
    "VariantSpec",
    "capacity",
    "load_proteus_profiles",
    "make_planner",
    "objective",
]
