"""A backend that takes the time its latency profile says, on any clock.

The simulator runs devices on this instead of ONNX Runtime; unit tests of the device
mechanism use it too. Outputs are zero rows of `output_shape` (the simulator needs timing, not
predictions). `kill()` makes the in-flight batch come back lost, as when a worker dies.

Without `spread` a batch takes exactly the profile's latency (exact tests). With it, the
time is drawn from a log-normal whose median is the profile's latency and whose sigma is
`spread[variant]` (see `lognormal_sigma`: fitted to a measured p95 or p99), from a seeded
generator, so a simulated run has the tail a real device has and is still reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from rheostat.clock import Clock, Timer
from rheostat.devices.work import Batch, BatchResult
from rheostat.profiling import LatencyProfile

__all__ = ["ProfiledExecutor", "lognormal_sigma"]

_Z = {0.90: 1.2816, 0.95: 1.6449, 0.99: 2.3263}  # standard normal quantiles


def lognormal_sigma(p50_s: float, tail_s: float, quantile: float = 0.99) -> float:
    """Sigma of the log-normal with median `p50_s` whose `quantile` is `tail_s`."""
    if quantile not in _Z:
        raise ValueError(f"quantile {quantile} must be one of {sorted(_Z)}")
    if p50_s <= 0 or tail_s < p50_s:
        raise ValueError(f"tail latency {tail_s} must be >= the median {p50_s} > 0")
    return math.log(tail_s / p50_s) / _Z[quantile]


class ProfiledExecutor:
    def __init__(
        self,
        clock: Clock,
        profiles: Mapping[str, LatencyProfile],
        output_shape: tuple[int, ...] = (1,),
        spread: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = clock
        self.profiles = profiles
        self.output_shape = output_shape
        self.spread = dict(spread or {})
        self._rng = np.random.default_rng(seed)
        self._normals = np.empty(0)
        self._next_normal = 0
        self._zero = np.zeros(output_shape, np.float32)
        self.log: list[tuple[float, str, int]] = []  # (start time, variant, batch size)
        self._ready = True
        self._in_flight: tuple[Timer, Callable[[BatchResult], None]] | None = None

    def add_variant(self, key: str, profile: LatencyProfile, sigma: float = 0.0) -> None:
        """Run batches of `key` at `profile`'s latency, spread by log-normal `sigma`."""
        self.profiles = {**self.profiles, key: profile}
        self.spread[key] = sigma

    @property
    def ready(self) -> bool:
        return self._ready

    def execute(self, batch: Batch, on_done: Callable[[BatchResult], None]) -> None:
        size = len(batch.payloads)
        duration = self.profiles[batch.variant_key].latency_s(size)
        sigma = self.spread.get(batch.variant_key, 0.0)
        if sigma > 0:
            duration *= math.exp(sigma * self._normal())
        self.log.append((self.clock.now(), batch.variant_key, size))
        outputs = (self._zero,) * size  # read-only rows: nobody writes to outputs

        def finish() -> None:
            self._in_flight = None
            on_done(BatchResult(outputs=outputs, compute_s=duration))

        self._in_flight = (self.clock.call_at(self.clock.now() + duration, finish), on_done)

    def _normal(self) -> float:
        if self._next_normal == len(self._normals):  # draw in blocks: cheap per batch
            self._normals = self._rng.standard_normal(4096)
            self._next_normal = 0
        self._next_normal += 1
        return float(self._normals[self._next_normal - 1])

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
