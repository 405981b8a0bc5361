"""Load shapes: a closed loop of N workers or an open loop of arrivals at R req/s.

A `Load` only decides *when* to send; `send` (given by the driver) does the request and
records its outcome. Both loops run until the driver sets `stop`; the open loop then waits
for the requests it has in flight.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import numpy as np

__all__ = [
    "ClosedLoop",
    "Distribution",
    "Load",
    "OpenLoop",
    "Send",
    "Sleeper",
    "arrival_offsets_s",
    "build_loads",
    "choice",
    "parse_range",
]

_MAX_LEVELS = 1000
_E = TypeVar("_E", bound=StrEnum)
_RANGE_FORM = "START[:END[:STEP]] with 0 < START <= END and STEP > 0, e.g. 1:8:1"


def choice(kind: type[_E], value: str, flag: str) -> _E:
    """`value` as a member of `kind`; ValueError naming the flag and the choices."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(member.value for member in kind)
        raise ValueError(f"{flag} {value!r}: expected one of {names}") from None


class Distribution(StrEnum):
    """How an open loop spaces its arrivals."""

    CONSTANT = "constant"
    POISSON = "poisson"


class Sleeper(Protocol):
    """The clock the driver needs (`rheostat.clock.WallClock` is one)."""

    def now(self) -> float: ...

    async def sleep(self, delay_s: float) -> None: ...


Send = Callable[[], Coroutine[Any, Any, None]]


class Load(Protocol):
    """A load shape: sends requests through `send` until `stop` is set."""

    @property
    def mode(self) -> str: ...

    @property
    def level(self) -> float: ...

    @property
    def num_connections(self) -> int: ...

    async def run(self, send: Send, clock: Sleeper, stop: asyncio.Event) -> None: ...


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """`concurrency` workers, each sending its next request when the last one is answered."""

    concurrency: int

    @property
    def mode(self) -> str:
        return "concurrency"

    @property
    def level(self) -> float:
        return self.concurrency

    @property
    def num_connections(self) -> int:
        return self.concurrency

    async def run(self, send: Send, clock: Sleeper, stop: asyncio.Event) -> None:
        async def worker() -> None:
            while not stop.is_set():
                await send()

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))


def arrival_offsets_s(
    rate_rps: float, distribution: Distribution, rng: np.random.Generator
) -> Iterator[float]:
    """Send times from the start of a level: every 1/rate s, or Poisson at `rate_rps`."""
    offset_s, index = 0.0, 0
    while True:
        yield offset_s
        index += 1
        if distribution is Distribution.POISSON:
            offset_s += float(rng.exponential(1 / rate_rps))
        else:
            offset_s = index / rate_rps


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """Arrivals at `rate_rps`, each sent on time whatever the earlier ones' fate."""

    rate_rps: float
    distribution: Distribution = Distribution.CONSTANT
    seed: int = 0

    @property
    def mode(self) -> str:
        return "request_rate"

    @property
    def level(self) -> float:
        return self.rate_rps

    @property
    def num_connections(self) -> int:
        return 0  # as many as the target allows

    async def run(self, send: Send, clock: Sleeper, stop: asyncio.Event) -> None:
        pending: set[asyncio.Task[None]] = set()
        start_s = clock.now()
        try:
            for offset_s in arrival_offsets_s(self.rate_rps, self.distribution, _rng(self.seed)):
                # sleep(0) when late still yields, so a lagging loop cannot starve the answers
                await clock.sleep(max(0.0, start_s + offset_s - clock.now()))
                if stop.is_set():
                    break
                task = asyncio.create_task(send())
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def parse_range(text: str, flag: str, *, integer: bool) -> tuple[float, ...]:
    """The levels of a perf_analyzer range `START[:END[:STEP]]` (END inclusive, STEP 1)."""
    parts = text.split(":")
    try:
        numbers = [int(p) if integer else float(p) for p in parts]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 3 or not all(math.isfinite(n) for n in numbers):
        raise ValueError(f"{flag} {text!r} is not a range; expected {_RANGE_FORM}")
    start = numbers[0]
    end = numbers[1] if len(numbers) > 1 else start
    step = numbers[2] if len(numbers) > 2 else 1
    for name, value, ok in (("START", start, start > 0), ("STEP", step, step > 0)):
        if not ok:
            raise ValueError(f"{flag} {text!r}: {name} {value} must be > 0; expected {_RANGE_FORM}")
    if end < start:
        raise ValueError(
            f"{flag} {text!r}: END {end} is below START {start}; expected {_RANGE_FORM}"
        )
    count = math.floor((end - start) / step + 1e-9) + 1
    if count > _MAX_LEVELS:
        raise ValueError(f"{flag} {text!r} makes {count} levels; at most {_MAX_LEVELS} are allowed")
    return tuple(start + i * step if integer else round(start + i * step, 9) for i in range(count))


def build_loads(
    concurrency_range: str | None,
    request_rate_range: str | None,
    distribution: Distribution = Distribution.CONSTANT,
) -> list[Load]:
    """One load per level of whichever range is given (default: concurrency 1)."""
    if concurrency_range is not None and request_rate_range is not None:
        raise ValueError("give either --concurrency-range or --request-rate-range, not both")
    if request_rate_range is not None:
        rates = parse_range(request_rate_range, "--request-rate-range", integer=False)
        return [OpenLoop(rate, distribution) for rate in rates]
    levels = parse_range(concurrency_range or "1", "--concurrency-range", integer=True)
    return [ClosedLoop(int(n)) for n in levels]
