"""Request outcomes folded into one level's numbers (pure functions, no I/O).

Latency percentiles use the nearest-rank method over successful requests: the p-th
percentile of n sorted latencies is the ceil(p/100 * n)-th of them. Throughput counts the
successful answers that arrived in the window, as perf_analyzer does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rheostat.perf.load import Load

__all__ = [
    "STANDARD_PERCENTILES",
    "LevelResult",
    "Sample",
    "is_stable",
    "percentile_of",
    "summarize",
]

STANDARD_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request's outcome; status 0 means no HTTP answer (connection error, timeout)."""

    sent_s: float
    done_s: float
    status: int
    retry_after: bool = False
    parameters: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class LevelResult:
    """The numbers of one level (or one window of it)."""

    mode: str  # "concurrency" or "request_rate"
    level: float
    window_s: float
    batch_size: int
    num_sent: int  # requests sent during the window
    num_ok: int  # successful answers that arrived during the window
    mean_ms: float | None
    latency_ms: dict[float, float]  # percentile -> ms, over successful requests
    errors: dict[int, int]  # HTTP status (0: no answer) -> count
    error_examples: dict[int, str]
    retry_after_share: float | None  # of the 429 answers
    queue_ms: float | None  # server-reported means, where the server reports them
    compute_ms: float | None
    total_ms: float | None  # arrival to answer inside the server (rheostat's total_ms)
    slo_met_share: float | None
    variants: dict[str, float]  # served variant -> share of successful answers
    stable: bool | None = None  # None: stability not checked

    @property
    def throughput_rps(self) -> float:
        return self.num_ok / self.window_s if self.window_s > 0 else 0.0

    @property
    def infer_per_s(self) -> float:
        return self.throughput_rps * self.batch_size

    @property
    def label(self) -> str:
        return f"{self.level:g}" if self.mode == "concurrency" else f"{self.level:g}/s"


def percentile_of(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    return sorted_values[max(1, math.ceil(pct / 100 * len(sorted_values))) - 1]


def _mean_of(samples: Sequence[Sample], key: str) -> float | None:
    values = [
        float(v)
        for s in samples
        if isinstance(v := s.parameters.get(key), int | float) and not isinstance(v, bool)
    ]
    return sum(values) / len(values) if values else None


def _shares(values: Sequence[object]) -> dict[str, float]:
    counts = Counter(str(v) for v in values)
    return {key: n / len(values) for key, n in counts.most_common()}


def summarize(
    samples: Sequence[Sample],
    start_s: float,
    end_s: float,
    load: Load,
    batch_size: int,
    percentiles: Sequence[float] = STANDARD_PERCENTILES,
    sent_s: Sequence[float] | None = None,
) -> LevelResult:
    """Fold the requests answered in [start_s, end_s) into one level's numbers.

    `sent_s` lists every send time, answered or not (default: those of `samples`); the
    driver passes it because requests still in flight have no sample yet.
    """
    sent = [s.sent_s for s in samples] if sent_s is None else sent_s
    done = [s for s in samples if start_s <= s.done_s < end_s]
    ok = [s for s in done if s.status == 200]
    latencies = sorted((s.done_s - s.sent_s) * 1e3 for s in ok)
    failed = [s for s in done if s.status != 200]
    refused = [s for s in failed if s.status == 429]
    slo = [bool(s.parameters["slo_met"]) for s in ok if "slo_met" in s.parameters]
    return LevelResult(
        mode=load.mode,
        level=load.level,
        window_s=end_s - start_s,
        batch_size=batch_size,
        num_sent=sum(1 for t in sent if start_s <= t < end_s),
        num_ok=len(ok),
        mean_ms=sum(latencies) / len(latencies) if latencies else None,
        latency_ms={p: percentile_of(latencies, p) for p in percentiles} if latencies else {},
        errors=dict(sorted(Counter(s.status for s in failed).items())),
        error_examples=dict(sorted({s.status: s.error for s in reversed(failed)}.items())),
        retry_after_share=sum(s.retry_after for s in refused) / len(refused) if refused else None,
        queue_ms=_mean_of(ok, "queue_ms"),
        compute_ms=_mean_of(ok, "compute_ms"),
        total_ms=_mean_of(ok, "total_ms"),
        slo_met_share=sum(slo) / len(slo) if slo else None,
        variants=_shares([s.parameters["variant"] for s in ok if "variant" in s.parameters]),
    )


def is_stable(windows: Sequence[LevelResult], tolerance_pct: float, percentile: float) -> bool:
    """perf_analyzer's rule: the last three windows' throughput and `percentile` latency
    each lie within `tolerance_pct` % of their mean."""
    if len(windows) < 3:
        return False
    last = windows[-3:]
    series = ([w.throughput_rps for w in last], [w.latency_ms.get(percentile, 0.0) for w in last])
    for values in series:
        mean = sum(values) / 3
        if mean <= 0 or any(abs(v - mean) > mean * tolerance_pct / 100 for v in values):
            return False
    return True
