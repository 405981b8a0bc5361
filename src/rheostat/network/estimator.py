"""Uplink bandwidth estimation from measured uploads, with no synchronised clocks.

A client knows how many bytes it sent and how long the upload took by its own clock (from
the first byte sent to the server's acknowledgement of the last). `BandwidthEstimator` keeps
a smoothed estimate from those samples:

* each sample's throughput is `bytes * 8 / seconds`, after subtracting the link's round-trip
  floor (the smallest time seen for an upload of one packet is latency, not bandwidth);
* the estimate is the harmonic mean of the last `window` samples (as FESTIVE and MPC-style
  ABR do: one fast sample cannot inflate it, one slow sample pulls it down at once), and
  `conservative_mbps` discounts it by the samples' spread, for planning against deadlines.

Pure and clock-free: callers pass `now_s`, so the simulator uses it as is.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["BandwidthEstimator", "UploadSample"]


@dataclass(frozen=True)
class UploadSample:
    bytes: int
    seconds: float
    at_s: float


@dataclass
class BandwidthEstimator:
    window: int = 5
    # uploads that fit one packet measure latency, not bandwidth; anything larger is
    # bandwidth-bound on a slow uplink (4 kB take 16 ms at 2 Mbit/s)
    min_bytes: int = 1500
    max_age_s: float = 10.0  # older samples no longer describe the link
    samples: deque[UploadSample] = field(default_factory=deque)
    rtt_floor_s: float = math.inf

    def record(self, nbytes: int, seconds: float, now_s: float) -> None:
        if nbytes <= 0 or seconds <= 0 or not math.isfinite(seconds):
            raise ValueError(f"upload sample of {nbytes} bytes in {seconds} s is not a measurement")
        if nbytes < self.min_bytes:
            self.rtt_floor_s = min(self.rtt_floor_s, seconds)
            return
        self.samples.append(UploadSample(nbytes, seconds, now_s))
        while len(self.samples) > self.window:
            self.samples.popleft()

    def _rates(self, now_s: float) -> list[float]:
        floor = 0.0 if math.isinf(self.rtt_floor_s) else self.rtt_floor_s
        rates = []
        for s in self.samples:
            if now_s - s.at_s > self.max_age_s:
                continue
            transfer = max(s.seconds - floor, s.seconds * 0.5)
            rates.append(s.bytes * 8 / transfer / 1e6)
        return rates

    def estimate_mbps(self, now_s: float) -> float | None:
        """Harmonic mean of recent samples' throughput (Mbit/s); None with no recent sample."""
        rates = self._rates(now_s)
        if not rates:
            return None
        return len(rates) / sum(1.0 / r for r in rates)

    def conservative_mbps(self, now_s: float) -> float | None:
        """The estimate less the samples' relative spread (at most halved): what a deadline
        should be planned against."""
        rates = self._rates(now_s)
        estimate = self.estimate_mbps(now_s)
        if estimate is None:
            return None
        if len(rates) < 2:
            return estimate * 0.8
        mean = sum(rates) / len(rates)
        spread = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)) / mean
        return estimate * max(0.5, 1.0 - spread)

    def upload_s(self, nbytes: int, now_s: float) -> float | None:
        """Expected seconds to upload `nbytes` at the conservative estimate (plus the floor)."""
        rate = self.conservative_mbps(now_s)
        if rate is None:
            return None
        floor = 0.0 if math.isinf(self.rtt_floor_s) else self.rtt_floor_s
        return floor + nbytes * 8 / (rate * 1e6)
