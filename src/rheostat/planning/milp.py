"""The MILP planner on HiGHS: optimal allocations, lexicographic, by device type.

Devices of one type are identical, so the model counts them instead of naming them. For each
device type t, each option v of t (`Problem.options`: demanded family, capacity > 0,
accuracy >= the family's minimum, memory fits) with capacity cap[t,v] and accuracy a_v, each
family f with rate R_f, priority p_f and target T_f = R_f * (1 + headroom), and c[t,v] the
number of devices of type t running v now:

    n[t,v] integer in [0, count_t]      devices of type t running v
    y[t,v] >= 0                         rps of v's family served by v on type t
    r[t,v] in [0, c[t,v]]               devices of type t no longer running v (swaps)
    u_f    in [0, R_f]                  served rps that counts (headroom excluded)

    sum_v n[t,v] <= count_t                         for every type t
    y[t,v] <= min(cap[t,v], T_f) * n[t,v]           for every (t, v), v in f
    sum_{t, v in f} y[t,v] <= T_f                   for every family f
    u_f <= sum_{t, v in f} y[t,v]                   for every family f
    r[t,v] >= c[t,v] - n[t,v]                       for every (t, v) with c[t,v] > 0

Stage 1 maximises the served score S = sum_f p_f u_f. Stage 2 adds S >= S1 (1 - 1e-6) - 1e-9
(`served_floor` of the stage-1 incumbent) and maximises the accuracy score

    sum_f sum_{t, v in f} a_v y[t,v] / max(R_f, eps)  -  swap_penalty * sum r[t,v]

Normalising by R_f makes every family count equally, not by volume: a family at 10 rps that
moves to a better variant gains as much as one at 1000 rps. Both scores are `Objective`.

Each stage gets what is left of `time_limit_s` and stops at `mip_rel_gap`. Stage 1 is
warm-started from `Problem.current` (keep every device, fill by accuracy), or from the greedy
plan when nothing runs yet, so it starts with an incumbent at least as good; stage 2 starts
from the stage-1 incumbent. If stage 1 ends with no incumbent or HiGHS raises, the greedy
planner answers (status "greedy_fallback"); a stage 2 that finds nothing keeps the stage-1
answer (status "time_limit").

The answer keeps only the integer part n: y is re-derived from n by the closed-form fill
(most accurate first, up to T_f), optimal for fixed n and free of solver tolerances (HiGHS
may stop with y a hair below it, e.g. at the served floor).

Types to devices: each device keeps its current variant while the new count of that variant
on its type allows (so device swaps equal sum r), the others take the remaining counts, and
y[t,v] is split evenly over the devices of type t running v.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from rheostat.clock import Stopwatch, monotonic_s
from rheostat.planning.greedy import GreedyPlanner, greedy_assignment
from rheostat.planning.problem import (
    SPARE_DEVICE_BONUS,
    Allocation,
    Option,
    Problem,
    VariantKey,
    finish_allocation,
    served_floor,
)

__all__ = ["MIP_ABS_GAP", "MilpPlanner"]

MIP_ABS_GAP = 1e-9
"""Absolute gap, small so that `Problem.mip_rel_gap` alone decides when HiGHS stops: its
default (1e-6) would dominate a small relative gap on stage 2, whose score is O(families)."""

_STATUS = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
}
_FEASIBLE = highspy.SolutionStatus.kSolutionStatusFeasible.value

Row = tuple[float, float, dict[int, float]]  # lower, upper, column -> coefficient


class MilpPlanner:
    """The MILP behind the `Planner` protocol."""

    def solve(self, problem: Problem) -> Allocation:
        with Stopwatch() as watch:
            allocation = _solve(problem)
        return dataclasses.replace(allocation, solve_time_s=watch.elapsed_s)


@dataclass(frozen=True)
class _Layout:
    """Column indices: n[k] = k, y[k] = K + k, r[k] = 2K + k, u[i] = 3K + i, where k indexes
    (device type, option) pairs and i the families in demand order."""

    pairs: tuple[tuple[str, Option], ...]
    families: tuple[str, ...]
    current: tuple[int, ...]  # c[k]

    @property
    def size(self) -> int:
        return len(self.pairs)

    def n(self, k: int) -> int:
        return k

    def y(self, k: int) -> int:
        return self.size + k

    def r(self, k: int) -> int:
        return 2 * self.size + k

    def u(self, i: int) -> int:
        return 3 * self.size + i

    @property
    def num_cols(self) -> int:
        return 3 * self.size + len(self.families)

    def of_family(self, family: str) -> list[int]:
        return [k for k, (_, o) in enumerate(self.pairs) if o.family == family]


def _layout(problem: Problem) -> _Layout:
    pairs = tuple((t, o) for t in problem.device_counts() for o in problem.options(t))
    families = tuple(d.family for d in problem.demand)
    return _Layout(pairs, families, _counts(problem, pairs, problem.current))


def _counts(
    problem: Problem,
    pairs: Sequence[tuple[str, Option]],
    assignment: Mapping[str, VariantKey | None],
) -> tuple[int, ...]:
    """Devices of each (type, option) pair running it in `assignment`."""
    types = {d.name: d.device_type for d in problem.devices}
    running = Counter((types[d], key) for d, key in assignment.items() if key is not None)
    return tuple(running[(t, o.key)] for t, o in pairs)


def _solve(problem: Problem) -> Allocation:
    layout = _layout(problem)
    try:
        result = _run_stages(problem, layout)
    except Exception:  # HiGHS failed: any feasible plan beats none
        result = None
    if result is None:
        fallback = GreedyPlanner().solve(problem)
        return dataclasses.replace(fallback, status="greedy_fallback")
    values, status = result
    return _allocation(problem, layout, values, status)


def _run_stages(problem: Problem, layout: _Layout) -> tuple[list[float], str] | None:
    """Stage 1 then stage 2 on one model; None when stage 1 ends without an incumbent."""
    deadline_s = monotonic_s() + problem.time_limit_s
    highs = _model(problem, layout)
    start = problem.current or greedy_assignment(problem)
    _set_start(highs, _warm_start(problem, layout, _counts(problem, layout.pairs, start)))
    first = _run(highs, deadline_s)
    if first is None:
        return None
    values, status = first
    costs = _served_costs(problem, layout)
    served = float(np.dot(costs, values))
    _add_rows(highs, [_served_row(problem, layout, served_floor(served))])
    _set_costs(highs, _accuracy_costs(problem, layout))
    _set_start(highs, values)
    second = _run(highs, deadline_s)
    if second is None:
        return values, "time_limit"
    worst = status if status != "optimal" else second[1]
    return second[0], worst


def _model(problem: Problem, layout: _Layout) -> highspy.Highs:
    highs = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy leaves __init__ untyped
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("mip_rel_gap", problem.mip_rel_gap)
    highs.setOptionValue("mip_abs_gap", MIP_ABS_GAP)
    lower, upper = _bounds(problem, layout)
    highs.addVars(layout.num_cols, lower, upper)
    integer = np.full(layout.size, highspy.HighsVarType.kInteger.value, dtype=np.uint8)
    highs.changeColsIntegrality(layout.size, np.arange(layout.size, dtype=np.int32), integer)
    highs.changeObjectiveSense(highspy.ObjSense.kMaximize)
    _set_costs(highs, _served_costs(problem, layout))
    _add_rows(highs, _rows(problem, layout))
    return highs


def _bounds(problem: Problem, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    counts = problem.device_counts()
    n_up = [float(counts[t]) for t, _ in layout.pairs]
    y_up = [min(o.capacity.rps * counts[t], problem.target_rps(o.family)) for t, o in layout.pairs]
    r_up = [float(c) for c in layout.current]
    u_up = [problem.demand_of(f).rate_rps for f in layout.families]
    upper = np.array([*n_up, *y_up, *r_up, *u_up], dtype=np.float64)
    return np.zeros(layout.num_cols), upper


def _rows(problem: Problem, layout: _Layout) -> list[Row]:
    rows: list[Row] = []
    for t, count in problem.device_counts().items():
        mine = [k for k, (tk, _) in enumerate(layout.pairs) if tk == t]
        rows.append((-np.inf, float(count), {layout.n(k): 1.0 for k in mine}))
    for k, (_, o) in enumerate(layout.pairs):
        rows.append((-np.inf, 0.0, {layout.y(k): 1.0, layout.n(k): -_per_device_rps(problem, o)}))
    for i, f in enumerate(layout.families):
        ys = {layout.y(k): 1.0 for k in layout.of_family(f)}
        rows.append((-np.inf, problem.target_rps(f), ys))
        rows.append((-np.inf, 0.0, {layout.u(i): 1.0} | {c: -1.0 for c in ys}))
    for k, c in enumerate(layout.current):
        if c > 0:
            rows.append((float(c), np.inf, {layout.n(k): 1.0, layout.r(k): 1.0}))
    return rows


def _per_device_rps(problem: Problem, option: Option) -> float:
    """Big-M of y <= M n: the capacity, or the family's target when smaller (y never
    exceeds it), which tightens the LP relaxation without cutting integer points."""
    return min(option.capacity.rps, problem.target_rps(option.family))


def _served_row(problem: Problem, layout: _Layout, floor: float) -> Row:
    costs = _served_costs(problem, layout)
    return (floor, np.inf, {int(c): float(costs[c]) for c in np.flatnonzero(costs)})


def _served_costs(problem: Problem, layout: _Layout) -> np.ndarray:
    costs = np.zeros(layout.num_cols)
    for i, f in enumerate(layout.families):
        costs[layout.u(i)] = problem.demand_of(f).priority
    return costs


def _accuracy_costs(problem: Problem, layout: _Layout) -> np.ndarray:
    costs = np.zeros(layout.num_cols)
    for k, (_, o) in enumerate(layout.pairs):
        accuracy = o.accuracy - problem.accuracy_baseline(o.family)
        costs[layout.y(k)] = accuracy / problem.accuracy_divisor(o.family)
        costs[layout.n(k)] = SPARE_DEVICE_BONUS * o.accuracy
        costs[layout.r(k)] = -problem.swap_penalty
    return costs


def _set_costs(highs: highspy.Highs, costs: np.ndarray) -> None:
    cols = np.arange(len(costs), dtype=np.int32)
    highs.changeColsCost(len(costs), cols, costs)


def _add_rows(highs: highspy.Highs, rows: Sequence[Row]) -> None:
    """Add rows in compressed-row form."""
    starts = np.cumsum([0, *(len(c) for _, _, c in rows[:-1])], dtype=np.int32)
    index = np.array([j for _, _, c in rows for j in c], dtype=np.int32)
    value = np.array([v for _, _, c in rows for v in c.values()], dtype=np.float64)
    lower = np.array([lo for lo, _, _ in rows], dtype=np.float64)
    upper = np.array([up for _, up, _ in rows], dtype=np.float64)
    highs.addRows(len(rows), lower, upper, len(index), starts, index, value)


def _fill(problem: Problem, layout: _Layout, counts: Sequence[int]) -> list[float]:
    """The best y for fixed n: each family's target poured into its pairs, most accurate
    first (optimal for both scores, as in `allocation_from_assignment`)."""
    ys = [0.0] * layout.size
    for f in layout.families:
        left = problem.target_rps(f)
        for k in sorted(layout.of_family(f), key=lambda k: -layout.pairs[k][1].accuracy):
            ys[k] = min(layout.pairs[k][1].capacity.rps * counts[k], left)
            left -= ys[k]
    return ys


def _warm_start(problem: Problem, layout: _Layout, counts: Sequence[int]) -> list[float]:
    """The feasible point running `counts` with the best y for them."""
    cols = [0.0] * layout.num_cols
    ys = _fill(problem, layout, counts)
    for k, n in enumerate(counts):
        cols[layout.n(k)] = float(n)
        cols[layout.y(k)] = ys[k]
        cols[layout.r(k)] = float(max(layout.current[k] - n, 0))
    for i, f in enumerate(layout.families):
        served = sum(ys[k] for k in layout.of_family(f))
        cols[layout.u(i)] = min(served, problem.demand_of(f).rate_rps)
    return cols


def _set_start(highs: highspy.Highs, cols: Sequence[float]) -> None:
    solution = highspy.HighsSolution()
    solution.col_value = np.asarray(cols, dtype=np.float64)
    solution.value_valid = True
    highs.setSolution(solution)


def _run(highs: highspy.Highs, deadline_s: float) -> tuple[list[float], str] | None:
    """Run with the time left; the incumbent and a status, or None without one."""
    left_s = deadline_s - monotonic_s()
    if left_s <= 0:
        return None
    highs.setOptionValue("time_limit", left_s)
    if highs.run() == highspy.HighsStatus.kError:
        return None
    if highs.getInfo().primal_solution_status != _FEASIBLE:
        return None
    status = highs.getModelStatus()
    name = _STATUS.get(status, status.name.removeprefix("k").lower())
    return list(highs.getSolution().col_value), name


def _allocation(
    problem: Problem, layout: _Layout, values: Sequence[float], status: str
) -> Allocation:
    counts = [round(values[layout.n(k)]) for k in range(layout.size)]
    served = _fill(problem, layout, counts)
    assignment = _place(problem, layout, counts)
    split: dict[str, dict[str, float]] = {f: {} for f in layout.families}
    for k, (t, o) in enumerate(layout.pairs):
        hosts = [
            d.name for d in problem.devices if d.device_type == t and assignment[d.name] == o.key
        ]
        for device in hosts:  # hosts <= counts[k]: each share stays within capacity
            split[o.family][device] = served[k] / counts[k]
    return finish_allocation(problem, assignment, split, status)


def _place(
    problem: Problem, layout: _Layout, counts: Sequence[int]
) -> dict[str, VariantKey | None]:
    """Devices keep their current variant while counts allow; the rest take what is left."""
    left = {(t, o.key): counts[k] for k, (t, o) in enumerate(layout.pairs)}
    assignment: dict[str, VariantKey | None] = {}
    for d in problem.devices:
        key = problem.current.get(d.name)
        if key is not None and left.get((d.device_type, key), 0) > 0:
            assignment[d.name] = key
            left[(d.device_type, key)] -= 1
    for d in problem.devices:
        if d.name in assignment:
            continue
        slot = next(
            ((t, key) for (t, key), n in left.items() if t == d.device_type and n > 0), None
        )
        assignment[d.name] = None if slot is None else slot[1]
        if slot is not None:
            left[slot] -= 1
    return assignment
