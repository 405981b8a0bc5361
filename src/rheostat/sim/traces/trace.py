"""The columnar `Trace` (one row per request, sorted by arrival), `merge`, and the checks
every reader and generator shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CountArray", "FloatArray", "IndexArray", "Trace", "merge"]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32]
CountArray = npt.NDArray[np.int64]

_PROTEUS_LINE = "arrival_time_ms,qos_level,latency_slo_ms"
_EMPTY = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True, eq=False, repr=False)
class Trace:
    """Arrivals of one or more families, one row per request, sorted by arrival time.

    The arrays are copied and made read-only on construction (lists are accepted), so a
    Trace is immutable. Equality is identity; compare the arrays to compare contents.
    """

    families: tuple[str, ...]
    """Family names, unique; `family[i] == k` means request i belongs to `families[k]`."""
    arrival_s: FloatArray
    """Arrival times in seconds from 0, float64, finite, >= 0 and sorted ascending."""
    family: IndexArray
    """Family index of each request, int32 in [0, len(families))."""
    slo_s: FloatArray
    """Per-request latency SLO in seconds, > 0, or NaN for "use the family's default"."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", _checked_families(self.families))
        index = _checked_index(self.family, len(self.families))
        object.__setattr__(self, "family", _frozen(index, np.int32))
        object.__setattr__(self, "arrival_s", _frozen(_checked_arrivals(self.arrival_s)))
        object.__setattr__(self, "slo_s", _frozen(_checked_slos(self.slo_s)))
        lengths = {len(self.arrival_s), len(self.family), len(self.slo_s)}
        if len(lengths) > 1:
            raise ValueError(
                f"arrival_s, family and slo_s must have one length (one row per request), "
                f"got {len(self.arrival_s)}, {len(self.family)} and {len(self.slo_s)}"
            )

    def __len__(self) -> int:
        return len(self.arrival_s)

    def __repr__(self) -> str:
        return (
            f"Trace({len(self)} requests over {self.duration_s:g} s, "
            f"families={list(self.families)})"
        )

    @property
    def duration_s(self) -> float:
        """Smallest whole second strictly after the last arrival (0 for an empty trace)."""
        return float(math.floor(self.arrival_s[-1]) + 1) if len(self) else 0.0

    def counts(self, window_s: float = 1.0) -> CountArray:
        """Arrivals per window per family, shape [num_windows, num_families].

        Window w is [w * window_s, (w + 1) * window_s); the windows cover `duration_s`.
        """
        _check_positive("window_s", window_s)
        # The tolerance keeps float noise (21 / 0.7 = 30.000000000000004) from adding a window.
        num_windows = math.ceil(self.duration_s / window_s - 1e-9)
        num_families = len(self.families)
        window = np.minimum((self.arrival_s // window_s).astype(np.int64), num_windows - 1)
        flat = np.bincount(
            window * num_families + self.family, minlength=num_windows * num_families
        )
        return flat.reshape(num_windows, num_families)

    def rates_rps(self, window_s: float = 1.0) -> FloatArray:
        """`counts(window_s) / window_s`: requests per second per window per family."""
        return self.counts(window_s) / window_s

    def mean_rates_rps(self) -> dict[str, float]:
        """Requests per second of each family over the whole `duration_s` (0 if empty)."""
        totals = np.bincount(self.family, minlength=len(self.families))
        duration_s = self.duration_s or 1.0
        return {name: float(totals[k]) / duration_s for k, name in enumerate(self.families)}

    def head(self, duration_s: float) -> Trace:
        """The requests arriving before `duration_s` (all families kept)."""
        _check_non_negative("duration_s", duration_s)
        end = int(np.searchsorted(self.arrival_s, duration_s, side="left"))
        return Trace(self.families, self.arrival_s[:end], self.family[:end], self.slo_s[:end])

    def scaled(self, speed: float) -> Trace:
        """Time-compressed by `speed` (> 1 is faster): arrivals at `arrival_s / speed`.

        Rates grow by `speed`; SLOs are kept, since they belong to the requests.
        """
        _check_positive("speed", speed)
        return Trace(self.families, self.arrival_s / speed, self.family, self.slo_s)

    def with_slo(self, slo_s: float) -> Trace:
        """The same arrivals with every request's SLO set to `slo_s` (NaN: family default)."""
        return Trace(self.families, self.arrival_s, self.family, np.full(len(self), slo_s))


def merge(*traces: Trace) -> Trace:
    """Union of `traces`: families matched by name (first-seen order), rows sorted by time.

    The sort is stable, so simultaneous arrivals keep the order of the arguments.
    """
    families = tuple(dict.fromkeys(name for trace in traces for name in trace.families))
    position = {name: k for k, name in enumerate(families)}
    remapped = [
        np.array([position[name] for name in trace.families], dtype=np.int32)[trace.family]
        for trace in traces
    ]
    arrival_s = np.concatenate([_EMPTY, *(trace.arrival_s for trace in traces)])
    order = np.argsort(arrival_s, kind="stable")
    family = np.concatenate([np.zeros(0, dtype=np.int32), *remapped])
    slo_s = np.concatenate([_EMPTY, *(trace.slo_s for trace in traces)])
    return Trace(families, arrival_s[order], family[order], slo_s[order])


# ---------------------------------------------------------------------------- validation


def _frozen(values: npt.ArrayLike, dtype: type[np.generic] = np.float64) -> npt.NDArray[Any]:
    array = np.array(values, dtype=dtype)  # a copy, so the caller's array stays writable
    array.setflags(write=False)
    return array


def _one_dimensional(name: str, values: npt.ArrayLike) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one row per request), got {array.shape}")
    return array


def _checked_families(families: Sequence[str]) -> tuple[str, ...]:
    names = tuple(families)
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise ValueError(f"family names must be non-empty strings, got {bad!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"family names must be unique, got {list(names)!r}; use merge()")
    return names


def _checked_index(values: npt.ArrayLike, num_families: int) -> npt.NDArray[Any]:
    index = _one_dimensional("family", values)
    if index.size == 0:
        return index
    if index.dtype.kind not in "iu":
        raise ValueError(f"family must hold integer indices, got dtype {index.dtype}")
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= num_families:
        bad = low if low < 0 else high
        raise ValueError(
            f"family index {bad} is out of range for {num_families} families; "
            f"indices must lie in [0, {num_families})"
        )
    return index


def _checked_arrivals(values: npt.ArrayLike) -> FloatArray:
    arrival_s = _one_dimensional("arrival_s", values).astype(np.float64)
    if not np.isfinite(arrival_s).all():
        raise ValueError(f"arrival_s must be finite, got {arrival_s[~np.isfinite(arrival_s)][0]}")
    if arrival_s.size and arrival_s[0] < 0:
        raise ValueError(f"arrival_s must be >= 0 (seconds from the start), got {arrival_s[0]}")
    backwards = np.flatnonzero(np.diff(arrival_s) < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise ValueError(
            f"arrival_s must be sorted ascending: arrival_s[{i}]={arrival_s[i]} comes after "
            f"arrival_s[{i - 1}]={arrival_s[i - 1]}; build it with from_schedule() or merge()"
        )
    return arrival_s


def _checked_slos(values: npt.ArrayLike) -> FloatArray:
    slo_s = _one_dimensional("slo_s", values).astype(np.float64)
    bad = ~np.isnan(slo_s) & ~((slo_s > 0) & np.isfinite(slo_s))
    if bad.any():
        raise ValueError(f"slo_s must be > 0 seconds or NaN (family default), got {slo_s[bad][0]}")
    return slo_s


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} must be a finite number > 0")
