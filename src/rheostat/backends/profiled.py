"""A backend that takes the time its latency profile says, on any clock.

The simulator runs devices on this instead of ONNX Runtime; unit tests of the device
mechanism use it too. Outputs are zero rows of `output_shape` (the simulator needs timing, not
predictions). `kill()` makes the in-flight batch come back lost, as when a worker dies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from rheostat.clock import Clock, Timer
from rheostat.devices.work import Batch, BatchResult
from rheostat.profiling import LatencyProfile

__all__ = ["ProfiledExecutor"]


class ProfiledExecutor:
    def __init__(
        self,
        clock: Clock,
        profiles: Mapping[str, LatencyProfile],
        output_shape: tuple[int, ...] = (1,),
    ) -> None:
        self.clock = clock
        self.profiles = profiles
        self.output_shape = output_shape
        self.log: list[tuple[float, str, int]] = []  # (start time, variant, batch size)
        self._ready = True
        self._in_flight: tuple[Timer, Callable[[BatchResult], None]] | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    def execute(self, batch: Batch, on_done: Callable[[BatchResult], None]) -> None:
        size = len(batch.payloads)
        duration = self.profiles[batch.variant_key].latency_s(size)
        self.log.append((self.clock.now(), batch.variant_key, size))
        outputs = tuple(np.zeros(self.output_shape, np.float32) for _ in range(size))

        def finish() -> None:
            self._in_flight = None
            on_done(BatchResult(outputs=outputs, compute_s=duration))

        self._in_flight = (self.clock.call_at(self.clock.now() + duration, finish), on_done)

    def kill(self, restart_after_s: float, on_ready: Callable[[], None]) -> None:
        """Lose the in-flight batch; become ready again `restart_after_s` later."""
        self._ready = False
        if self._in_flight is not None:
            timer, on_done = self._in_flight
            timer.cancel()
            self._in_flight = None
            on_done(BatchResult(lost=True))

        def back() -> None:
            self._ready = True
            on_ready()

        self.clock.call_at(self.clock.now() + restart_after_s, back)
