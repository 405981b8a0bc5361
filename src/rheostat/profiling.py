"""Latency profiles: how long a variant takes on a device at each batch size.

The batch policies ask a `LatencyModel` for T_proc(b). `LatencyProfile` answers from measured
points (piecewise-linear between them, linear extrapolation past the last two), and folds in
observed executions with an exponentially weighted moving average so that the model follows
the device when it runs slower or faster than it did at profiling time. The full profiler
(every variant x device x batch size, percentiles, memory) builds on this.

The average alone is what throughput is planned on, but a deadline planned on it is missed
by every batch that runs slower than the average, and on a shared machine one in several
does. Each profile therefore also learns how far above its own prediction batches run: an
online estimate of the 95th percentile of observed / predicted (a stochastic quantile
step per batch, never below 1). `guarded` is the profile stretched by that ratio: what the
device mechanism checks deadlines and admission against. On an exact backend (the
simulator without spread) the ratio stays 1 and nothing changes.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Protocol

__all__ = ["GuardedLatency", "LatencyModel", "LatencyProfile"]

TAIL_QUANTILE = 0.95  # of observed / predicted batch time, per profile
TAIL_STEP = 0.02  # per batch: +0.019 after one slower than the guard, -0.001 otherwise
MAX_TAIL_RATIO = 2.0


class LatencyModel(Protocol):
    def latency_s(self, batch_size: int) -> float:
        """Expected processing time of one batch of `batch_size` items, in seconds."""
        ...


class LatencyProfile:
    """Measured batch latencies with interpolation and online correction.

    `observe(b, seconds)` moves the point at `b` (or inserts it) toward the observation by
    `smoothing`; a profile therefore never drifts on points it has never seen.
    """

    def __init__(self, points_s: Mapping[int, float], smoothing: float = 0.2) -> None:
        if not points_s:
            raise ValueError("a latency profile needs at least one (batch_size, seconds) point")
        bad = {b: s for b, s in points_s.items() if b < 1 or s <= 0}
        if bad:
            raise ValueError(f"profile points {bad} must have batch_size >= 1 and seconds > 0")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing {smoothing} must be in (0, 1]")
        self._points = dict(sorted(points_s.items()))
        self._sizes = list(self._points)  # sorted; kept with _points (the simulator's hot path)
        self._smoothing = smoothing
        self.tail_ratio = 1.0
        self.guarded = GuardedLatency(self, self)

    @property
    def points_s(self) -> dict[int, float]:
        return dict(self._points)

    def latency_s(self, batch_size: int) -> float:
        sizes = self._sizes
        if len(sizes) == 1:
            (b0,) = sizes
            return (
                self._points[b0] * max(batch_size, 1) / b0 if batch_size > b0 else self._points[b0]
            )
        i = bisect.bisect_left(sizes, batch_size)
        if i < len(sizes) and sizes[i] == batch_size:
            return self._points[batch_size]
        lo, hi = (sizes[0], sizes[1]) if i == 0 else (sizes[-2], sizes[-1])
        if 0 < i < len(sizes):
            lo, hi = sizes[i - 1], sizes[i]
        t_lo, t_hi = self._points[lo], self._points[hi]
        value = t_lo + (t_hi - t_lo) * (batch_size - lo) / (hi - lo)
        return max(value, min(self._points.values()) * 0.5)

    def reset(self, points_s: Mapping[int, float]) -> None:
        """Start again from new measurements (a new model version was swapped in)."""
        fresh = LatencyProfile(points_s, self._smoothing)
        self._points, self._sizes = fresh._points, fresh._sizes
        self.tail_ratio = 1.0

    def observe(self, batch_size: int, seconds: float) -> None:
        if seconds <= 0 or batch_size < 1:
            return
        above = seconds / self.latency_s(batch_size)  # before this batch is folded in
        step = TAIL_STEP * (TAIL_QUANTILE - (above <= self.tail_ratio))
        self.tail_ratio = min(max(self.tail_ratio + step, 1.0), MAX_TAIL_RATIO)
        old = self._points.get(batch_size)
        new = seconds if old is None else old + self._smoothing * (seconds - old)
        if old is None:
            self._points = dict(sorted({**self._points, batch_size: new}.items()))
            self._sizes = list(self._points)
        else:
            self._points[batch_size] = new


class GuardedLatency:
    """`model`'s latency stretched by the tail ratio that `tail` has learnt."""

    __slots__ = ("model", "tail")

    def __init__(self, model: LatencyModel, tail: LatencyProfile) -> None:
        self.model = model
        self.tail = tail

    def latency_s(self, batch_size: int) -> float:
        return self.model.latency_s(batch_size) * self.tail.tail_ratio
