"""Demand estimation per family: an EWMA over 1-s bins with burst detection.

Pure state machine: the caller passes `now`. Arrivals are counted in bins of `bin_s`; each
completed bin folds into an exponentially weighted average, faster on the way up
(`alpha_up`) than down (`alpha`); empty bins count, so the estimate decays when traffic
stops. A *burst* is a completed bin whose rate exceeds `burst_factor` times the average:
the estimate then jumps to that bin's rate at once instead of creeping up, because
under-estimating a rising load costs SLOs while over-estimating it only costs some accuracy
for a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DemandEstimator"]


@dataclass
class _Family:
    bin_index: int
    count: int = 0
    ewma_rps: float = 0.0
    last_bin_rps: float = 0.0
    seen_bins: int = 0


class DemandEstimator:
    def __init__(
        self,
        bin_s: float = 1.0,
        alpha: float = 0.3,
        burst_factor: float = 1.5,
        alpha_up: float | None = None,
    ) -> None:
        alpha_up = alpha if alpha_up is None else alpha_up
        if bin_s <= 0 or not 0 < alpha <= 1 or not 0 < alpha_up <= 1 or burst_factor <= 1:
            raise ValueError(
                f"bin_s={bin_s} must be > 0, alpha={alpha} and alpha_up={alpha_up} in (0, 1], "
                f"burst_factor={burst_factor} > 1"
            )
        self.bin_s = bin_s
        self.alpha = alpha
        self.alpha_up = alpha_up
        self.burst_factor = burst_factor
        self._families: dict[str, _Family] = {}

    def record(self, family: str, now_s: float, count: int = 1) -> None:
        state = self._roll(family, now_s)
        state.count += count

    def rates(self, now_s: float) -> dict[str, float]:
        """Estimated arrival rate (requests/s) of every family seen so far."""
        return {family: self._roll(family, now_s).ewma_rps for family in list(self._families)}

    def _roll(self, family: str, now_s: float) -> _Family:
        index = math.floor(now_s / self.bin_s)
        state = self._families.setdefault(family, _Family(bin_index=index))
        while state.bin_index < index:
            self._close_bin(state)
            skipped = index - state.bin_index
            if skipped > 1 and state.count == 0:  # a run of empty bins, in closed form
                state.ewma_rps *= (1 - self.alpha) ** (skipped - 1)
                state.last_bin_rps = 0.0
                state.bin_index = index
        return state

    def _close_bin(self, state: _Family) -> None:
        rate = state.count / self.bin_s
        if state.seen_bins == 0:
            state.ewma_rps = rate
        elif rate > self.burst_factor * state.ewma_rps:
            state.ewma_rps = rate  # burst: follow at once
        else:
            alpha = self.alpha_up if rate > state.ewma_rps else self.alpha
            state.ewma_rps += alpha * (rate - state.ewma_rps)
        state.last_bin_rps = rate
        state.seen_bins += 1
        state.count = 0
        state.bin_index += 1
