"""Bandwidth traces: what a client's uplink can carry over time, for emulated links and the
simulator alike.

A `BandwidthTrace` is a list of Mbit/s values, one per `step_s`, replayed cyclically from an
offset (Jellyfish starts each client at a random point of its trace). `read_trace` knows the
formats of the public traces under `../shared/data/jellyfish`:

* one value per line in Mbit/s (the Jellyfish traces, and the 1-s bins derived from
  Mahimahi's), with the step given by the caller (1 s for the WiFi and LTE traces);
* `time_s<TAB>mbps` per line (the Solis WiFi traces, and the cooked 3G/FCC traces), with
  uneven steps resampled to 1-s bins (each bin the mean of the samples in force during it);
* Mahimahi packet-delivery traces (one line per 1500-byte delivery opportunity, a ms
  timestamp), binned to 1 s.

These data sets are not shipped; `synthetic_trace` makes small seeded ones for tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BandwidthTrace", "read_trace", "synthetic_trace"]

MAHIMAHI_PACKET_BITS = 1500 * 8


@dataclass(frozen=True)
class BandwidthTrace:
    name: str
    mbps: tuple[float, ...]
    step_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.mbps:
            raise ValueError(f"trace {self.name!r} has no values")
        if self.step_s <= 0:
            raise ValueError(f"trace {self.name!r}: step_s {self.step_s} must be > 0")
        bad = [v for v in self.mbps if not (v >= 0 and math.isfinite(v))]
        if bad:
            raise ValueError(f"trace {self.name!r}: values {bad[:3]} must be finite and >= 0")

    @property
    def duration_s(self) -> float:
        return len(self.mbps) * self.step_s

    def at(self, t_s: float, offset_s: float = 0.0) -> float:
        """Mbit/s in force `t_s` after the start, replaying from `offset_s`, cyclically."""
        index = int(((t_s + offset_s) % self.duration_s) // self.step_s)
        return self.mbps[min(index, len(self.mbps) - 1)]

    def scaled(self, factor: float, floor_mbps: float = 0.0) -> BandwidthTrace:
        """Every value times `factor`, at least `floor_mbps` (a link never quite at zero)."""
        if factor <= 0:
            raise ValueError(f"scale factor {factor} must be > 0")
        values = tuple(max(v * factor, floor_mbps) for v in self.mbps)
        return BandwidthTrace(f"{self.name}x{factor:g}", values, self.step_s)

    def describe(self) -> str:
        v = np.array(self.mbps)
        return (
            f"{self.name}: {len(v)} x {self.step_s:g} s, Mbit/s min {v.min():.2f} / median "
            f"{np.median(v):.2f} / mean {v.mean():.2f} / max {v.max():.2f}"
        )


def _bins(times_s: Sequence[float], values: Sequence[float], step_s: float) -> tuple[float, ...]:
    """Resample a step function (value `values[i]` from `times_s[i]` on) to `step_s` bins."""
    end = times_s[-1] + (times_s[-1] - times_s[-2] if len(times_s) > 1 else step_s)
    bins = []
    for k in range(max(1, math.ceil((end - times_s[0]) / step_s - 1e-9))):
        lo, hi = times_s[0] + k * step_s, times_s[0] + (k + 1) * step_s
        covered, total = 0.0, 0.0
        for i, start in enumerate(times_s):
            stop = times_s[i + 1] if i + 1 < len(times_s) else end
            overlap = min(stop, hi) - max(start, lo)
            if overlap > 0:
                covered += overlap
                total += overlap * values[i]
        bins.append(total / covered if covered > 0 else 0.0)
    return tuple(bins)


def read_trace(path: Path, *, step_s: float = 1.0) -> BandwidthTrace:
    """Read a trace in any of the formats above; errors name the file and line."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty trace")
    try:
        rows = [[float(x) for x in line] for line in lines]
    except ValueError as exc:
        raise ValueError(f"{path}: not a bandwidth trace ({exc})") from None
    widths = {len(r) for r in rows}
    if widths == {2}:  # time_s, Mbit/s
        times, values = [r[0] for r in rows], [r[1] for r in rows]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError(f"{path}: times must increase")
        return BandwidthTrace(path.name, _bins(times, values, 1.0), 1.0)
    if widths != {1}:
        raise ValueError(f"{path}: expected one or two numbers per line")
    values = [r[0] for r in rows]
    integral = all(v == int(v) for v in values)
    rising = all(b >= a for a, b in itertools.pairwise(values))
    if integral and rising and len(values) > 1 and values[-1] >= 1000:
        # Mahimahi: ms timestamps of 1500-byte delivery opportunities
        counts = np.bincount((np.array(values) // 1000).astype(np.int64))
        return BandwidthTrace(path.name, tuple(c * MAHIMAHI_PACKET_BITS / 1e6 for c in counts), 1.0)
    return BandwidthTrace(path.name, tuple(values), step_s)


def synthetic_trace(
    name: str = "synthetic-lte",
    *,
    seconds: int = 120,
    median_mbps: float = 12.0,
    swing: float = 0.6,
    seed: int = 0,
) -> BandwidthTrace:
    """A seeded LTE-like uplink: a log-normal random walk around `median_mbps`, clipped to
    [median/10, median*3], one value per second (for tests; real traces are not shipped)."""
    rng = np.random.default_rng(seed)
    level = np.cumsum(rng.normal(0.0, swing / 3, seconds))
    level -= np.linspace(0, level[-1], seconds)  # ends where it starts: cyclic replay
    values = np.clip(median_mbps * np.exp(level), median_mbps / 10, median_mbps * 3)
    return BandwidthTrace(name, tuple(round(float(v), 3) for v in values), 1.0)
