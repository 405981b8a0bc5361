"""Time, the only place rheostat reads it.

Every component that needs "now" or a timer receives a `Clock`. The live server uses
`WallClock` (the asyncio loop's monotonic clock); the simulator and unit tests use
`VirtualClock`, an event heap that only moves when told to, so policies and mechanisms run
deterministically and their tests assert exact times.

Times are float seconds on the clock's own axis (not Unix time). `Stopwatch` exists for code
that must measure a real duration outside any loop (worker processes, benchmarks).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Clock", "Stopwatch", "Timer", "VirtualClock", "WallClock", "monotonic_s", "unix_time_s"]


class Timer(Protocol):
    """A scheduled callback that can be cancelled before it fires."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The time source and timer service shared by the server and the simulator."""

    def now(self) -> float:
        """Current time in seconds."""
        ...

    def call_at(self, when_s: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` once at `when_s` (immediately-next if `when_s` is in the past)."""
        ...


class WallClock:
    """Real time on a running asyncio loop (monotonic seconds).

    `now()` reads `time.monotonic()` rather than `loop.time()`: uvloop's loop time is cached
    per loop iteration and has millisecond resolution, too coarse for batch deadlines.
    Timers are therefore set relative to now, which is correct whatever the loop's base.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        return time.monotonic()

    def call_at(self, when_s: float, callback: Callable[[], None]) -> Timer:
        return self.loop.call_later(max(0.0, when_s - time.monotonic()), callback)

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)


@dataclass(order=True)
class _Event:
    when_s: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A discrete-event clock: time advances only through `advance`/`run_until`/`run`.

    Events at equal times fire in the order they were scheduled (FIFO), which makes runs
    reproducible.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = start_s
        self._heap: list[_Event] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when_s: float, callback: Callable[[], None]) -> Timer:
        event = _Event(max(when_s, self._now), next(self._seq), callback)
        heapq.heappush(self._heap, event)
        return event

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self._now + delay_s, callback)

    @property
    def num_pending(self) -> int:
        return sum(1 for event in self._heap if not event.cancelled)

    def next_event_s(self) -> float | None:
        """Time of the next live event, or None when nothing is scheduled."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].when_s if self._heap else None

    def step(self) -> bool:
        """Fire the next event; False when there is none."""
        when = self.next_event_s()
        if when is None:
            return False
        event = heapq.heappop(self._heap)
        self._now = when
        event.callback()
        return True

    def run_until(self, until_s: float) -> None:
        """Fire every event due at or before `until_s`, then set the time to `until_s`."""
        while (when := self.next_event_s()) is not None and when <= until_s:
            self.step()
        self._now = max(self._now, until_s)

    def advance(self, delta_s: float) -> None:
        self.run_until(self._now + delta_s)

    def run(self, max_events: int = 10_000_000) -> None:
        """Fire events until none is left (bounded, so a runaway loop cannot hang a test)."""
        for _ in range(max_events):
            if not self.step():
                return
        raise RuntimeError(f"VirtualClock.run stopped after {max_events} events")


def monotonic_s() -> float:
    """Monotonic seconds for measuring durations outside an event loop."""
    return time.perf_counter()


class Stopwatch:
    """Measures one elapsed duration: `with Stopwatch() as sw: ...; sw.elapsed_s`."""

    def __init__(self) -> None:
        self._start = 0.0
        self.elapsed_s = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self._start


def unix_time_s() -> float:
    """Wall-clock Unix time, for timestamps reported to people (never for scheduling)."""
    return time.time()
