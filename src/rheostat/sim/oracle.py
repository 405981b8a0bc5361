"""The offline oracle: what no policy can beat on a whole trace, known in advance.

Printed as the last row of every comparison table so that results are read against the
limit. Given the demand of every family in every window, `oracle_bound` solves a fluid LP
for the lowest SLO-violation ratio and, at that ratio, the highest effective accuracy.

Model. Time is cut into windows of `window_s`; `demand[w, f]` requests of family f arrive in
window w. Devices of one type are interchangeable, so the LP works per device type:

    y[w, f, v, t] >= 0   devices of type t (fractional) running variant v of f in window w

    sum_{f, v} y[w, f, v, t]                  <= count_t        every window w, type t
    served[w, f] = sum_{v, t} y[w, f, v, t] * cap(v, t) * window_s
    served[w, f]                              <= demand[w, f]   every window w, family f

`cap(v, t)` is `slo_capacity_rps` with the whole SLO as the batch budget (the planner keeps
half of it for queueing): the oracle must be optimistic. Stage 1 maximises the total served;
stage 2 keeps it within `SERVED_SLACK` (relative) of the stage-1 optimum and maximises the
accuracy-weighted served, sum of served * accuracy, as the planner does lexicographically.

Assumptions, which make this a bound of the model rather than of every real system:

* fluid relaxation: fractional devices, requests served at the capacity rate with no batch
  filling delay, and variant swaps free and instantaneous at window edges (optimistic);
* no carry-over: a request is served in its arrival window or never. This can be slightly
  pessimistic at window edges, where a real server may finish a late arrival within its
  SLO in the next window (at most a share SLO / window_s of one window's capacity).

The effective accuracy is a bound only for policies that reach the oracle's violation ratio
(one that sheds more may be more accurate). `max_accuracy_drop_pct` is that of the oracle's
own allocation, which maximises total accuracy, not its worst window: it is reported for
reference, not as a bound.

Columns exist only for (window, family) pairs with demand, so the LP grows with the trace's
busy windows, and it is built column-wise from numpy arrays (each column sits in exactly two
rows: its window's device row and its window's served row).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

from rheostat.clock import Stopwatch
from rheostat.planning.problem import VariantSpec, capacity

__all__ = [
    "ORACLE_BATCH_BUDGET_FRACTION",
    "SERVED_SLACK",
    "OracleBound",
    "oracle_bound",
    "slo_capacity_rps",
]

ORACLE_BATCH_BUDGET_FRACTION = 1.0
"""Share of the SLO a batch may spend processing in the oracle: all of it (optimistic)."""

SERVED_SLACK = 1e-7
"""Relative slack on the stage-1 served optimum when stage 2 maximises accuracy."""

_NOISE_REQUESTS = 1e-9
"""Served amounts below this are solver noise and count as zero."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields have no boolean equality
class OracleBound:
    """The oracle's figures for one trace on one cluster."""

    slo_violation_ratio: float  # (total - served) / total; 0 when nothing was asked
    effective_accuracy_pct: float  # 100 x served-weighted mean accuracy; NaN if none served
    max_accuracy_drop_pct: float  # 100 - worst accuracy window's accuracy; NaN if none served
    throughput_qps: float  # served / trace duration
    served: FloatArray  # [W, F] requests served per window and family
    accuracy_pct: FloatArray  # [W] effective accuracy per window, NaN when none served
    solve_time_s: float  # building and solving both LP stages

    def __post_init__(self) -> None:
        if self.served.ndim != 2 or self.accuracy_pct.shape != (self.served.shape[0],):
            raise ValueError(
                f"accuracy_pct shape {self.accuracy_pct.shape} must be (W,) for served "
                f"shape {self.served.shape}"
            )


def slo_capacity_rps(
    variant: VariantSpec,
    device_type: str,
    slo_s: float,
    budget_fraction: float = ORACLE_BATCH_BUDGET_FRACTION,
) -> float:
    """The planner's `capacity` with the oracle's budget: best `b / latency(b)` over the
    batch sizes whose latency fits `budget_fraction * slo_s`; 0 when none fits."""
    return capacity(variant, device_type, slo_s, budget_fraction).rps


def oracle_bound(
    demand: npt.ArrayLike,
    window_s: float,
    device_counts: Mapping[str, int],
    variants: Sequence[VariantSpec],
    slo_s: Mapping[str, float],
    families: Sequence[str],
    accuracy_window_s: float = 10.0,
) -> OracleBound:
    """Solve the oracle LP (module docstring) for `demand[w, f]`, the requests of
    `families[f]` arriving in window w. `variants[i].accuracy` is normalised to its family's
    best. A family with no variant that fits its SLO on a device present goes unserved.
    `max_accuracy_drop_pct` aggregates the windows into non-overlapping groups of
    `accuracy_window_s` (a multiple of `window_s`; the last group may be shorter).

    Raises ValueError naming the bad input: demand not [W >= 1, len(families)], negative or
    non-finite; window sizes; duplicate families; a variant of a family not in `families`;
    a family without an SLO > 0; a negative device count.
    """
    counts = _check_inputs(demand, window_s, device_counts, variants, slo_s, families)
    asked = _check_demand(demand, families)
    group_size = _group_size(window_s, accuracy_window_s)
    options = _options(variants, families, slo_s, list(device_counts))
    with Stopwatch() as watch:
        layout = _layout(asked, window_s, options)
        devices = _solve(asked, counts, layout)
    return _summarise(asked, window_s, group_size, layout, devices, watch.elapsed_s)


def _check_inputs(
    demand: npt.ArrayLike,
    window_s: float,
    device_counts: Mapping[str, int],
    variants: Sequence[VariantSpec],
    slo_s: Mapping[str, float],
    families: Sequence[str],
) -> FloatArray:
    """Everything but the demand matrix; returns the device counts in mapping order."""
    if not 0.0 < window_s < math.inf:
        raise ValueError(f"window_s {window_s} must be > 0 and finite")
    if len(set(families)) != len(families):
        raise ValueError(f"families {list(families)} has duplicates")
    unknown = sorted({v.family for v in variants} - set(families))
    if unknown:
        raise ValueError(f"variants name unknown families {unknown}; known: {list(families)}")
    bad_slo = [f for f in families if not 0.0 < slo_s.get(f, math.nan) < math.inf]
    if bad_slo:
        raise ValueError(f"families {bad_slo} need an slo_s > 0 (got {dict(slo_s)})")
    negative = {t: n for t, n in device_counts.items() if n < 0}
    if negative:
        raise ValueError(f"device_counts {negative} must be >= 0")
    return np.array([float(n) for n in device_counts.values()], dtype=np.float64)


def _check_demand(demand: npt.ArrayLike, families: Sequence[str]) -> FloatArray:
    array = np.asarray(demand)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != len(families):
        raise ValueError(
            f"demand shape {array.shape} must be [W >= 1, {len(families)}] "
            f"(one column per family of {list(families)})"
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"demand dtype {array.dtype} must be integer or float")
    values = array.astype(np.float64)
    bad = ~(np.isfinite(values) & (values >= 0))
    if bad.any():
        w, f = np.argwhere(bad)[0]
        raise ValueError(
            f"demand[{w}, {f}] = {array[w, f]} ({families[f]!r}) must be finite and >= 0"
        )
    return values


def _group_size(window_s: float, accuracy_window_s: float) -> int:
    """Windows per accuracy group; the group must be a whole number of windows."""
    ratio = accuracy_window_s / window_s
    size = round(ratio) if math.isfinite(ratio) else 0
    if size < 1 or abs(size - ratio) > 1e-9 * ratio:
        raise ValueError(
            f"accuracy_window_s {accuracy_window_s} must be a positive multiple of "
            f"window_s {window_s}"
        )
    return size


@dataclass(frozen=True)
class _Options:
    """The (variant, device type) pairs that can serve, as parallel arrays."""

    family: IntArray  # index into families
    device_type: IntArray  # index into the device types
    capacity_rps: FloatArray
    accuracy: FloatArray


def _options(
    variants: Sequence[VariantSpec],
    families: Sequence[str],
    slo_s: Mapping[str, float],
    device_types: Sequence[str],
) -> _Options:
    found = [
        (families.index(v.family), t, slo_capacity_rps(v, name, slo_s[v.family]), v.accuracy)
        for v in variants
        for t, name in enumerate(device_types)
    ]
    found = [o for o in found if o[2] > 0]
    return _Options(
        np.array([o[0] for o in found], dtype=np.int64),
        np.array([o[1] for o in found], dtype=np.int64),
        np.array([o[2] for o in found], dtype=np.float64),
        np.array([o[3] for o in found], dtype=np.float64),
    )


@dataclass(frozen=True)
class _Layout:
    """One LP column per (window, option) whose family has demand in that window."""

    window: IntArray  # [n] window of each column
    family: IntArray  # [n] family of each column
    device_type: IntArray  # [n] device type of each column
    requests_per_device: FloatArray  # [n] cap * window_s: served per unit of y
    accuracy: FloatArray  # [n]

    @property
    def num_cols(self) -> int:
        return len(self.window)


def _layout(demand: FloatArray, window_s: float, options: _Options) -> _Layout:
    window, option = np.nonzero(demand[:, options.family] > 0)
    return _Layout(
        window.astype(np.int64),
        options.family[option],
        options.device_type[option],
        options.capacity_rps[option] * window_s,
        options.accuracy[option],
    )


def _lp(demand: FloatArray, counts: FloatArray, layout: _Layout) -> highspy.HighsLp:
    """Stage 1, column-wise. Rows: device rows `w * T + t`, then served rows
    `W * T + w * F + f`; each column has one entry in each, in that (sorted) order."""
    num_windows, num_families = demand.shape
    num_types = len(counts)
    n = layout.num_cols
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = num_windows * (num_types + num_families)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = layout.requests_per_device
    lp.col_lower_ = np.zeros(n)
    # y never usefully exceeds the devices of its type nor what serves its whole demand.
    need = demand[layout.window, layout.family] / layout.requests_per_device
    lp.col_upper_ = np.minimum(counts[layout.device_type], need)
    lp.row_lower_ = np.full(lp.num_row_, -np.inf)
    lp.row_upper_ = np.concatenate([np.tile(counts, num_windows), demand.ravel()])
    device_row = layout.window * num_types + layout.device_type
    served_row = num_windows * num_types + layout.window * num_families + layout.family
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.a_matrix_.start_ = np.arange(0, 2 * n + 1, 2, dtype=np.int64)
    lp.a_matrix_.index_ = np.column_stack([device_row, served_row]).ravel()
    lp.a_matrix_.value_ = np.column_stack([np.ones(n), layout.requests_per_device]).ravel()
    return lp


def _solve(demand: FloatArray, counts: FloatArray, layout: _Layout) -> FloatArray:
    """Both stages on one model (stage 2 warm-starts from stage 1's basis); y per column."""
    n = layout.num_cols
    if n == 0:
        return np.zeros(0)
    highs = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy leaves __init__ untyped
    highs.setOptionValue("output_flag", False)
    highs.passModel(_lp(demand, counts, layout))
    best = _run(highs, "served")
    cols = np.arange(n, dtype=np.int64)
    floor = best * (1.0 - SERVED_SLACK)
    highs.addRow(floor, np.inf, n, cols, layout.requests_per_device)
    highs.changeColsCost(n, cols, layout.requests_per_device * layout.accuracy)
    _run(highs, "accuracy")
    return np.maximum(np.asarray(highs.getSolution().col_value, dtype=np.float64), 0.0)


def _run(highs: highspy.Highs, stage: str) -> float:
    """Solve; the optimum. The LP is feasible (y = 0) and bounded, so anything but an
    optimum is a solver failure."""
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"oracle LP ({stage} stage) ended {highs.modelStatusToString(status)}")
    return float(highs.getInfo().objective_function_value)


def _summarise(
    demand: FloatArray,
    window_s: float,
    group_size: int,
    layout: _Layout,
    devices: FloatArray,
    solve_time_s: float,
) -> OracleBound:
    num_windows, num_families = demand.shape
    per_col = devices * layout.requests_per_device
    per_col[per_col < _NOISE_REQUESTS] = 0.0
    cell = layout.window * num_families + layout.family
    size = num_windows * num_families
    served = _sum_by(cell, per_col, size).reshape(num_windows, num_families)
    weighted = _sum_by(cell, per_col * layout.accuracy, size).reshape(served.shape)
    total, done = float(demand.sum()), float(served.sum())
    grouped = _accuracy_pct(np.arange(num_windows) // group_size, served, weighted)
    worst = float(grouped[~np.isnan(grouped)].min(initial=np.inf))
    return OracleBound(
        slo_violation_ratio=max(0.0, (total - done) / total) if total > 0 else 0.0,
        effective_accuracy_pct=_ratio_pct(float(weighted.sum()), done),
        max_accuracy_drop_pct=100.0 - worst if math.isfinite(worst) else math.nan,
        throughput_qps=done / (num_windows * window_s),
        served=served,
        accuracy_pct=_accuracy_pct(np.arange(num_windows), served, weighted),
        solve_time_s=solve_time_s,
    )


def _accuracy_pct(groups: IntArray, served: FloatArray, weighted: FloatArray) -> FloatArray:
    """Served-weighted accuracy of each group of windows (`groups[w]`), NaN if none served."""
    done = _sum_by(groups, served.sum(axis=1), int(groups.max()) + 1)
    acc = _sum_by(groups, weighted.sum(axis=1), len(done))
    out = np.full(len(done), np.nan)
    np.divide(100.0 * acc, done, out=out, where=done > 0)
    return out


def _ratio_pct(weighted: float, served: float) -> float:
    return 100.0 * weighted / served if served > 0 else math.nan


def _sum_by(index: IntArray, weights: FloatArray, size: int) -> FloatArray:
    """`out[i]` = sum of `weights` where `index == i`, for i < size."""
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)
