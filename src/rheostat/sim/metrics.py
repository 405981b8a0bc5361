"""The metrics of a run, as Proteus (Ahmad et al., ASPLOS'24, Sec. 6.1) defines them.

A run, simulated or live, yields one row per request: a `RequestLog` while it runs, frozen
into columnar `Requests` at the end. Every request ends in one `Status`, and only ON_TIME
requests count as served:

- throughput: ON_TIME requests per second of trace duration;
- effective accuracy: mean normalized accuracy (accuracy of the variant that answered divided
  by the best accuracy of its family) over ON_TIME requests, in percent;
- max accuracy drop: 100 - the lowest effective accuracy over the windows that served at
  least one request (non-overlapping, 10 s by default);
- SLO violation ratio: (late + dropped + shed) / all requests.

Windows are the slices [k w, (k + 1) w) of *arrival* time from 0, and a request belongs to
the window it arrived in. The last window is shorter than `w` when the duration is not a
multiple of it, and rates in it divide by its real width. Latency percentiles are over
answered (ON_TIME and LATE) requests, with numpy's linear interpolation.

Every reduction is a `np.bincount` over (family, window) cells, so summarizing is linear in
the number of requests with no Python loop over them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

__all__ = [
    "TIMELINE_COLUMNS",
    "RequestLog",
    "Requests",
    "Status",
    "Summary",
    "Timeline",
    "ratio",
    "summarize",
    "summarize_by_family",
    "timeline",
    "timeline_by_family",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TIMELINE_COLUMNS = (
    "t_s",
    "demand_qps",
    "throughput_qps",
    "effective_accuracy_pct",
    "violation_ratio",
)
"""The columns `write_csv` writes, one row per window."""


class Status(IntEnum):
    """How a request ended. Only ON_TIME counts as served."""

    ON_TIME = 0
    """Answered within its deadline."""
    LATE = 1
    """Answered after its deadline."""
    DROPPED = 2
    """Dropped before running because it could not meet its deadline (HTTP 504)."""
    SHED = 3
    """Refused at admission (HTTP 429), or failed."""


@dataclass(frozen=True, eq=False)
class Requests:
    """Every request of a run, one column per field; row i is request i.

    Arrays are coerced to the dtypes below. Answered (ON_TIME, LATE) requests must carry an
    accuracy in [0, 1] and a finish time not before their arrival; DROPPED and SHED ones an
    accuracy of NaN (their `finish_s` is ignored).
    """

    families: tuple[str, ...]
    """Family names, unique; `family` indexes into them."""
    arrival_s: npt.NDArray[np.float64]
    """Arrival time, seconds from the start of the trace, finite and >= 0."""
    family: npt.NDArray[np.int32]
    """Index into `families`."""
    status: npt.NDArray[np.uint8]
    """A `Status` value."""
    accuracy: npt.NDArray[np.float32]
    """Normalized accuracy in [0, 1] of the variant that answered; NaN when not answered."""
    finish_s: npt.NDArray[np.float64]
    """When the answer was sent; NaN when never answered."""

    def __post_init__(self) -> None:
        dtypes = {"arrival_s": np.float64, "family": np.int32, "status": np.uint8}
        dtypes |= {"accuracy": np.float32, "finish_s": np.float64}
        for name, dtype in dtypes.items():
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype))
        lengths = {name: len(getattr(self, name)) for name in dtypes}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns must have one length each, got lengths {lengths}")
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"families={self.families} must be unique")
        self._check_values()

    def __len__(self) -> int:
        return len(self.arrival_s)

    def _check_values(self) -> None:
        answered = self.status <= Status.LATE
        in_unit = (self.accuracy >= 0) & (self.accuracy <= 1)
        rules: list[tuple[npt.NDArray[np.generic], npt.NDArray[np.bool_], str]] = [
            (self.family, (self.family < 0) | (self.family >= len(self.families)),
             f"family must index families={self.families}"),
            (self.status, self.status > max(Status), "status must be a Status value"),
            (self.arrival_s, ~np.isfinite(self.arrival_s) | (self.arrival_s < 0),
             "arrival_s must be finite and >= 0"),
            (self.accuracy, answered & ~in_unit,
             "an answered request needs an accuracy in [0, 1]"),
            (self.finish_s, answered & ~(self.finish_s >= self.arrival_s),
             "an answered request needs finish_s >= arrival_s"),
            (self.accuracy, ~answered & ~np.isnan(self.accuracy),
             "a DROPPED or SHED request has accuracy NaN"),
        ]  # fmt: skip
        for values, bad, rule in rules:
            _reject(bad, values, rule)


def _reject(bad: npt.NDArray[np.bool_], values: npt.NDArray[np.generic], rule: str) -> None:
    """Raise naming the first request where `bad` holds, and its value."""
    where = np.flatnonzero(bad)
    if where.size:
        index = int(where[0])
        raise ValueError(f"request {index}: {rule}, got {values[index].item()!r}")


@dataclass
class RequestLog:
    """Append-only log of a running run; `freeze` turns it into `Requests`.

    `record` only appends to Python lists, so it stays cheap on the hot path; all checks
    happen once, in `freeze`.
    """

    families: tuple[str, ...]
    """Family names; `record`'s `family` indexes into them."""
    _family: list[int] = field(default_factory=list, init=False, repr=False)
    _arrival_s: list[float] = field(default_factory=list, init=False, repr=False)
    _status: list[int] = field(default_factory=list, init=False, repr=False)
    _accuracy: list[float] = field(default_factory=list, init=False, repr=False)
    _finish_s: list[float] = field(default_factory=list, init=False, repr=False)

    def record(
        self,
        family: int,
        arrival_s: float,
        status: Status,
        accuracy: float = math.nan,
        finish_s: float = math.nan,
    ) -> None:
        """Append one finished request (accuracy and finish_s stay NaN if not answered)."""
        self._family.append(family)
        self._arrival_s.append(arrival_s)
        self._status.append(status)
        self._accuracy.append(accuracy)
        self._finish_s.append(finish_s)

    def __len__(self) -> int:
        return len(self._family)

    def freeze(self) -> Requests:
        """The log as columns; raises ValueError naming the first invalid request."""
        return Requests(
            families=self.families,
            arrival_s=np.array(self._arrival_s, dtype=np.float64),
            family=np.array(self._family, dtype=np.int32),
            status=np.array(self._status, dtype=np.uint8),
            accuracy=np.array(self._accuracy, dtype=np.float32),
            finish_s=np.array(self._finish_s, dtype=np.float64),
        )


@dataclass(frozen=True)
class Summary:
    """The Proteus metrics of a whole run, or of one family in it."""

    num_requests: int
    """Requests that arrived."""
    throughput_qps: float
    """ON_TIME requests per second of trace duration."""
    effective_accuracy_pct: float
    """Mean normalized accuracy of ON_TIME requests x 100; NaN if none."""
    max_accuracy_drop_pct: float
    """100 - the lowest windowed effective accuracy among windows that served; NaN if none."""
    slo_violation_ratio: float
    """(late + dropped + shed) / num_requests; NaN without requests."""
    late: int
    """Requests answered after their deadline."""
    dropped: int
    """Requests dropped before running (HTTP 504)."""
    shed: int
    """Requests refused at admission (HTTP 429) or failed."""
    p50_latency_s: float
    """Median finish - arrival of answered requests; NaN if none."""
    p99_latency_s: float
    """99th percentile finish - arrival of answered requests; NaN if none."""

    def __post_init__(self) -> None:
        counts = {"late": self.late, "dropped": self.dropped, "shed": self.shed}
        if min(counts.values()) < 0 or sum(counts.values()) > self.num_requests:
            raise ValueError(
                f"counts {counts} must be >= 0 and sum to at most num_requests={self.num_requests}"
            )


@dataclass(frozen=True, eq=False)
class Timeline:
    """Per-window metrics of a run; element k covers arrivals in [t_s[k], t_s[k] + window_s)."""

    window_s: float
    """Width of a window (the last one may be shorter)."""
    t_s: FloatArray
    """Start of each window."""
    demand_qps: FloatArray
    """Arrivals per second."""
    throughput_qps: FloatArray
    """ON_TIME requests per second."""
    effective_accuracy_pct: FloatArray
    """Mean normalized accuracy of ON_TIME requests x 100; NaN where none was served."""
    violation_ratio: FloatArray
    """Share of arrivals that were not ON_TIME; NaN where nothing arrived."""

    def __post_init__(self) -> None:
        lengths = {name: len(getattr(self, name)) for name in TIMELINE_COLUMNS}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns must have one length each, got lengths {lengths}")


@dataclass(frozen=True, eq=False)
class _Cells:
    """Counts per (family, window) cell: one row per family, one column per window."""

    arrivals: IntArray
    on_time: IntArray
    accuracy_sum: FloatArray
    """Sum of the normalized accuracy of ON_TIME requests."""
    width_s: FloatArray
    """Real width of each window."""


def _cells(requests: Requests, duration_s: float, window_s: float) -> _Cells:
    num_windows = _num_windows(duration_s, window_s)
    _check_horizon(requests, duration_s)
    window = np.minimum(requests.arrival_s // window_s, num_windows - 1).astype(np.int64)
    cell = requests.family.astype(np.int64) * num_windows + window
    shape = (len(requests.families), num_windows)
    size = shape[0] * shape[1]
    on_time = requests.status == Status.ON_TIME
    served = cell[on_time]
    weights = requests.accuracy[on_time]
    starts_s = np.arange(num_windows) * window_s
    return _Cells(
        arrivals=np.bincount(cell, minlength=size).reshape(shape),
        on_time=np.bincount(served, minlength=size).reshape(shape),
        accuracy_sum=np.bincount(served, weights, size).reshape(shape).astype(np.float64),
        width_s=np.minimum(window_s, duration_s - starts_s),
    )


def _num_windows(duration_s: float, window_s: float) -> int:
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s={duration_s} must be finite and > 0")
    if not (window_s > 0 and math.isfinite(window_s)):
        raise ValueError(f"window_s={window_s} must be finite and > 0")
    # The tolerance keeps float noise (0.3 / 0.1 = 2.9999...) from adding an empty window.
    return max(1, math.ceil(duration_s / window_s - 1e-9))


def _check_horizon(requests: Requests, duration_s: float) -> None:
    late_arrival = float(requests.arrival_s.max(initial=0.0))
    if late_arrival > duration_s:
        raise ValueError(
            f"a request arrived at {late_arrival} s, past duration_s={duration_s}; "
            "pass the duration of the whole trace"
        )


def ratio(numerator: FloatArray | IntArray, denominator: FloatArray | IntArray) -> FloatArray:
    """numerator / denominator elementwise, NaN where the denominator is 0."""
    out = np.full(np.shape(denominator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _percentile(values: FloatArray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


def _latency_s(requests: Requests) -> tuple[FloatArray, npt.NDArray[np.int32]]:
    """finish - arrival of answered requests, with the family of each."""
    answered = requests.status <= Status.LATE
    return (requests.finish_s - requests.arrival_s)[answered], requests.family[answered]


def _summary(
    arrivals: IntArray,
    on_time: IntArray,
    accuracy_sum: FloatArray,
    counts: IntArray,
    latency_s: FloatArray,
    duration_s: float,
) -> Summary:
    """Summary from per-window counts, counts per `Status` and the answered latencies."""
    num_requests, num_on_time = int(arrivals.sum()), int(on_time.sum())
    window_pct = 100 * ratio(accuracy_sum, on_time)[on_time > 0]
    return Summary(
        num_requests=num_requests,
        throughput_qps=num_on_time / duration_s,
        effective_accuracy_pct=_scalarratio(100 * float(accuracy_sum.sum()), num_on_time),
        max_accuracy_drop_pct=100 - float(window_pct.min()) if window_pct.size else math.nan,
        slo_violation_ratio=_scalarratio(num_requests - num_on_time, num_requests),
        late=int(counts[Status.LATE]),
        dropped=int(counts[Status.DROPPED]),
        shed=int(counts[Status.SHED]),
        p50_latency_s=_percentile(latency_s, 50),
        p99_latency_s=_percentile(latency_s, 99),
    )


def _scalarratio(numerator: float, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def summarize(requests: Requests, duration_s: float, window_s: float = 10.0) -> Summary:
    """The metrics of the whole run; `window_s` sets the windows of the max accuracy drop.

    `duration_s` is the length of the trace (throughput divides by it), not of the part
    that saw traffic; a request arriving after it raises ValueError.
    """
    cells = _cells(requests, duration_s, window_s)
    return _summary(
        cells.arrivals.sum(axis=0),
        cells.on_time.sum(axis=0),
        cells.accuracy_sum.sum(axis=0),
        np.bincount(requests.status, minlength=len(Status)),
        _latency_s(requests)[0],
        duration_s,
    )


def summarize_by_family(
    requests: Requests, duration_s: float, window_s: float = 10.0
) -> dict[str, Summary]:
    """`summarize` of each family on its own, keyed by family name in `families` order.

    A family's throughput still divides by the whole `duration_s`.
    """
    cells = _cells(requests, duration_s, window_s)
    num_families, num_statuses = len(requests.families), len(Status)
    cell = requests.family.astype(np.int64) * num_statuses + requests.status
    counts = np.bincount(cell, minlength=num_families * num_statuses)
    latency_s = _split_by_family(*_latency_s(requests), num_families)
    return {
        name: _summary(
            cells.arrivals[index],
            cells.on_time[index],
            cells.accuracy_sum[index],
            counts.reshape(num_families, num_statuses)[index],
            latency_s[index],
            duration_s,
        )
        for index, name in enumerate(requests.families)
    }


def _split_by_family(
    values: FloatArray, family: npt.NDArray[np.int32], num_families: int
) -> list[FloatArray]:
    """`values` grouped by family with one stable sort instead of one mask per family."""
    order = np.argsort(family, kind="stable")
    bounds = np.cumsum(np.bincount(family, minlength=num_families))[:-1]
    return np.split(values[order], bounds)


def timeline(requests: Requests, duration_s: float, window_s: float = 1.0) -> Timeline:
    """Per-window metrics of the whole run (all families together)."""
    cells = _cells(requests, duration_s, window_s)
    return _timeline(
        cells.arrivals.sum(axis=0),
        cells.on_time.sum(axis=0),
        cells.accuracy_sum.sum(axis=0),
        cells.width_s,
        window_s,
    )


def timeline_by_family(
    requests: Requests, duration_s: float, window_s: float = 1.0
) -> dict[str, Timeline]:
    """`timeline` of each family on its own, keyed by family name in `families` order."""
    cells = _cells(requests, duration_s, window_s)
    return {
        name: _timeline(
            cells.arrivals[index],
            cells.on_time[index],
            cells.accuracy_sum[index],
            cells.width_s,
            window_s,
        )
        for index, name in enumerate(requests.families)
    }


def _timeline(
    arrivals: IntArray,
    on_time: IntArray,
    accuracy_sum: FloatArray,
    width_s: FloatArray,
    window_s: float,
) -> Timeline:
    return Timeline(
        window_s=window_s,
        t_s=np.arange(width_s.size, dtype=np.float64) * window_s,
        demand_qps=arrivals / width_s,
        throughput_qps=on_time / width_s,
        effective_accuracy_pct=100 * ratio(accuracy_sum, on_time),
        violation_ratio=ratio(arrivals - on_time, arrivals),
    )
