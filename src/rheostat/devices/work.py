"""The units of work that flow from the router to a device and back.

`Payload` is what one item carries to the worker process: a ready tensor, an encoded image
(bytes) or a decoded UINT8 HWC image. The worker turns it into the variant's input. Work
items carry callbacks rather than futures so that the same objects run on the virtual clock
in the simulator and on asyncio in the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from rheostat.errors import RequestError

__all__ = [
    "Batch",
    "BatchResult",
    "ItemResult",
    "Payload",
    "PayloadKind",
    "WorkItem",
]


class PayloadKind(StrEnum):
    TENSOR = "tensor"  # already the variant's input row
    ENCODED = "encoded"  # JPEG/PNG bytes
    HWC = "hwc"  # UINT8 height x width x 3


@dataclass(frozen=True, slots=True)
class Payload:
    kind: PayloadKind
    data: Any  # np.ndarray for TENSOR/HWC, bytes for ENCODED


@dataclass(frozen=True, slots=True)
class ItemResult:
    output: np.ndarray
    variant: str
    device: str
    queue_s: float
    compute_s: float
    finished_s: float
    stage: int = 0  # a staged variant: the stage (1-based) that answered; 0 otherwise
    energy_j: float = 0.0  # the item's share of its batch's energy, by the device's power model


Outcome = ItemResult | RequestError


@dataclass(slots=True)
class WorkItem:
    """One inference of one input; a request with N inputs becomes N items."""

    family: str
    variant: str
    payload: Payload
    arrival_s: float
    deadline_s: float
    on_done: Callable[[Outcome], None]
    priority: int = 0
    attempts: int = 0
    enqueued_s: float = 0.0
    seq: int = 0
    device: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: int
    variant_key: str
    payloads: tuple[Payload, ...]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a backend returns: one output row or one error message per item."""

    outputs: tuple[np.ndarray | str, ...] = ()
    compute_s: float = 0.0
    lost: bool = False  # the worker died; nothing was computed
    error: str = ""  # the whole batch failed (e.g. the session raised)
    stages: tuple[int, ...] = ()  # a staged variant: per item, the stage that answered it
    extra: dict[str, float] = field(default_factory=dict)
