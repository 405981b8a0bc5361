"""Per-second series per family for the web page: demand, served, capacity, accuracy, SLO.

A pure state machine over 1-s bins of the engine clock (the caller passes times), keeping
the last `keep_s` seconds. Capacity is sampled by the caller's function when a bin opens,
so the series shows what the plan could carry at each moment.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rheostat.monitoring.record import RequestRecord, RequestStatus

__all__ = ["TimeSeries"]


@dataclass
class _Bin:
    index: int
    capacity_rps: float
    arrivals: int = 0
    on_time: int = 0
    answered: int = 0  # results, late ones included
    accuracy_sum: float = 0.0


class TimeSeries:
    def __init__(
        self, capacity: Callable[[str], float] = lambda family: math.nan, keep_s: int = 300
    ) -> None:
        if keep_s < 1:
            raise ValueError(f"keep_s={keep_s} must be >= 1")
        self.capacity = capacity
        self.keep_s = keep_s
        self._bins: dict[str, deque[_Bin]] = {}
        self.totals = {"requests": 0, "slo_violations": 0, "shed": 0}

    def finished(self, record: RequestRecord) -> None:
        if record.status is RequestStatus.FAILED:
            return  # bad requests are not demand
        current = self._bin(record.family, record.arrival_s)
        current.arrivals += record.num_items
        self.totals["requests"] += record.num_items
        if record.slo_violation:
            self.totals["slo_violations"] += record.num_items
        if record.status is RequestStatus.SHED:
            self.totals["shed"] += record.num_items
        if record.status in (RequestStatus.ON_TIME, RequestStatus.LATE):
            current.answered += record.num_items
            current.accuracy_sum += record.accuracy * record.num_items
        if record.status is RequestStatus.ON_TIME:
            current.on_time += record.num_items

    def batch(self, variant: str, size: int, compute_s: float) -> None:
        """Batches do not show on the page."""

    def _bin(self, family: str, now_s: float) -> _Bin:
        index = math.floor(now_s)
        bins = self._bins.setdefault(family, deque(maxlen=self.keep_s))
        if not bins or bins[-1].index < index:
            bins.append(_Bin(index, self.capacity(family)))
        return bins[-1]  # a record arriving late for a closed bin counts in the newest

    def recent_accuracy(self, family: str, seconds: int = 10) -> float | None:
        """Mean accuracy of the answers of the last `seconds` bins (None: none)."""
        bins = list(self._bins.get(family, ()))[-seconds:]
        answered = sum(b.answered for b in bins)
        return sum(b.accuracy_sum for b in bins) / answered if answered else None

    def snapshot(self, now_s: float, unix_offset_s: float) -> dict[str, Any]:
        """The page's series: every family over the same 1-s grid ending at `now_s`,
        timestamps in Unix seconds (`unix_offset_s` = Unix time - engine time)."""
        last = math.floor(now_s)
        first = max([last - self.keep_s + 1, *(b[0].index for b in self._bins.values() if b)])
        first = min(first, last)
        grid = range(first, last + 1)
        families = {}
        for family, bins in self._bins.items():
            by_index = {b.index: b for b in bins}
            series = [by_index.get(i) for i in grid]
            families[family] = {
                "demand_rps": [b.arrivals if b else 0 for b in series],
                "served_rps": [b.on_time if b else 0 for b in series],
                "capacity_rps": _capacity(series, self.capacity(family)),
                "accuracy": [b.accuracy_sum / b.answered if b and b.answered else None
                             for b in series],
                "slo_attainment": [b.on_time / b.arrivals if b and b.arrivals else None
                                   for b in series],
            }  # fmt: skip
        return {
            "window_s": 1.0,
            "t": [i + unix_offset_s for i in grid],
            "families": families,
            "totals": dict(self.totals),
        }


def _capacity(series: list[_Bin | None], now: float) -> list[float | None]:
    """Capacity per bin; seconds without traffic carry the last known value forward."""
    out: list[float | None] = []
    last: float | None = None
    for b in series:
        if b is not None and math.isfinite(b.capacity_rps):
            last = b.capacity_rps
        out.append(last)
    if out and math.isfinite(now):
        out[-1] = now
    return out
