"""The clocks: exact virtual time, FIFO ties, cancellation; the wall clock on asyncio."""

import asyncio
import re
from pathlib import Path

import pytest

from rheostat.clock import Stopwatch, VirtualClock, WallClock


def test_virtual_clock_fires_in_time_order_with_fifo_ties() -> None:
    clock = VirtualClock()
    log: list[tuple[str, float]] = []
    clock.call_at(0.5, lambda: log.append(("b", clock.now())))
    clock.call_at(0.2, lambda: log.append(("a", clock.now())))
    clock.call_at(0.5, lambda: log.append(("c", clock.now())))
    clock.run()
    assert log == [("a", 0.2), ("b", 0.5), ("c", 0.5)]


def test_cancel_and_run_until() -> None:
    clock = VirtualClock(start_s=1.0)
    log: list[float] = []
    timer = clock.call_at(1.5, lambda: log.append(clock.now()))
    clock.call_later(0.25, lambda: log.append(clock.now()))
    timer.cancel()
    clock.run_until(2.0)
    assert log == [1.25]
    assert clock.now() == 2.0
    assert clock.num_pending == 0


def test_past_times_fire_now_and_callbacks_can_schedule() -> None:
    clock = VirtualClock(start_s=3.0)
    log: list[float] = []
    clock.call_at(1.0, lambda: clock.call_later(0.5, lambda: log.append(clock.now())))
    clock.run()
    assert log == [3.5]


def test_runaway_loops_are_bounded() -> None:
    clock = VirtualClock()

    def again() -> None:
        clock.call_later(0.0, again)

    clock.call_at(0.0, again)
    with pytest.raises(RuntimeError, match="stopped after 100 events"):
        clock.run(max_events=100)


def test_wall_clock_schedules_on_the_running_loop() -> None:
    async def scenario() -> tuple[float, float]:
        clock = WallClock()
        fired = asyncio.get_running_loop().create_future()
        start = clock.now()
        clock.call_at(start + 0.02, lambda: fired.set_result(clock.now()))
        return start, await fired

    start, fired_at = asyncio.run(scenario())
    assert fired_at - start >= 0.02


def test_stopwatch_measures() -> None:
    with Stopwatch() as watch:
        sum(range(10000))
    assert watch.elapsed_s > 0


def test_no_module_outside_clock_reads_time() -> None:
    banned = re.compile(r"time\.(time|monotonic|perf_counter|sleep)\(|asyncio\.sleep\(")
    package = Path(__file__).resolve().parents[1] / "src" / "rheostat"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "clock.py" and banned.search(path.read_text())
    ]
    assert offenders == []
