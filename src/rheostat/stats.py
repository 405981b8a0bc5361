"""Per-variant inference statistics in the shape of Triton's statistics extension.

Counts and cumulative nanoseconds: `success`/`fail` (whole requests), `queue` and
`compute_infer` (per item), `inference_count` (items) and `execution_count` (batches).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rheostat.clock import unix_time_s
from rheostat.devices.work import ItemResult

__all__ = ["StatsBook", "VariantStats"]


@dataclass
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, n: int = 1) -> None:
        self.count += n
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class VariantStats:
    success: _Duration = field(default_factory=_Duration)
    fail: _Duration = field(default_factory=_Duration)
    queue: _Duration = field(default_factory=_Duration)
    compute_infer: _Duration = field(default_factory=_Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    rejected: int = 0


class StatsBook:
    def __init__(self) -> None:
        self.variants: dict[str, VariantStats] = {}
        self.rejected: dict[str, int] = {}

    def _of(self, key: str) -> VariantStats:
        return self.variants.setdefault(key, VariantStats())

    def record_success(self, key: str, total_s: float, results: Iterable[ItemResult]) -> None:
        stats = self._of(key)
        stats.success.add(total_s)
        for result in results:
            stats.queue.add(result.queue_s)
            stats.inference_count += 1
        stats.last_inference_ms = int(unix_time_s() * 1000)

    def record_failure(self, key: str, total_s: float) -> None:
        self._of(key).fail.add(total_s)

    def record_rejection(self, family: str) -> None:
        self.rejected[family] = self.rejected.get(family, 0) + 1

    def record_batch(self, key: str, size: int, compute_s: float) -> None:
        stats = self._of(key)
        stats.execution_count += 1
        stats.compute_infer.add(compute_s, size)

    def model_stats(self, key: str, version: int | None) -> dict[str, Any]:
        stats = self._of(key)
        return {
            "name": key,
            "version": "" if version is None else str(version),
            "last_inference": stats.last_inference_ms,
            "inference_count": stats.inference_count,
            "execution_count": stats.execution_count,
            "inference_stats": {
                "success": stats.success.as_dict(),
                "fail": stats.fail.as_dict(),
                "queue": stats.queue.as_dict(),
                "compute_infer": stats.compute_infer.as_dict(),
            },
        }
