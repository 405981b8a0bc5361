"""One finished request, as the engine reports it to its monitors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = ["RequestMonitor", "RequestRecord", "RequestStatus"]


class RequestStatus(StrEnum):
    ON_TIME = "on_time"  # 200 within the deadline
    LATE = "late"  # 200 after the deadline (an SLO violation)
    DROPPED = "dropped"  # 504: the deadline could not be met, answered before running
    SHED = "shed"  # 429: refused at admission (queue full, or no variant would make it)
    FAILED = "failed"  # any other error (400, 404, 503, 500)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    family: str
    variant: str  # `family.variant` that served it; "" when none did
    num_items: int
    status: RequestStatus
    arrival_s: float  # engine clock
    duration_s: float  # arrival to answer
    queue_s: float = 0.0  # mean over items
    compute_s: float = 0.0  # mean over items (its batch's dispatch-to-answer time)
    accuracy: float = 0.0  # of the variant that served it
    status_code: int = 200
    energy_j: float = 0.0  # all items' shares of their batches' device energy

    @property
    def slo_violation(self) -> bool:
        return self.status in (RequestStatus.LATE, RequestStatus.DROPPED, RequestStatus.SHED)


class RequestMonitor(Protocol):
    def finished(self, record: RequestRecord) -> None: ...

    def batch(self, variant: str, size: int, compute_s: float) -> None: ...
