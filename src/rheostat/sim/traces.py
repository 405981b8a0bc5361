"""Request arrival traces for the simulator: who asks, when, and within what SLO.

A `Trace` is columnar (one numpy array per attribute, one row per request, sorted by arrival)
so that traces of 10^5-10^6 requests load, slice and count in milliseconds. Traces come from
files (`read_proteus`, `read_counts`), from seeded generators (`poisson`, `gamma_bursts`,
`diurnal`, `step`, `from_schedule`) or from a scenario file's mapping (`build_trace`, keyed
by `TraceKind`); `merge` combines them. Generators are deterministic given `seed`.

Times are seconds from the start of the trace. A trace covers [0, `duration_s`), where
`duration_s` is the smallest whole second strictly after the last arrival: the arrays hold
no separate end time, so a generated trace whose last seconds happen to be empty is
shorter than the `duration_s` it was asked for.
"""

from __future__ import annotations

import csv
import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

__all__ = [
    "Trace",
    "TraceKind",
    "build_trace",
    "build_traces",
    "diurnal",
    "from_schedule",
    "gamma_bursts",
    "merge",
    "poisson",
    "read_counts",
    "read_proteus",
    "step",
]

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


# ---------------------------------------------------------------------------- Proteus files


def read_proteus(directory: Path, families: Sequence[str] | None = None) -> Trace:
    """The Proteus (ASPLOS'24) trace format: one `<directory>/<family>.txt` per family.

    Lines are `arrival_time_ms,qos_level,latency_slo_ms` (integers; `qos_level` is ignored;
    `#` starts a comment; blank lines are skipped). Families are the file stems, sorted, or
    `families` in the order given. Requests are merged across files by time (stable, so
    simultaneous arrivals follow the family order). Raises ValueError naming the file and
    line of the first malformed line.
    """
    paths = _proteus_paths(Path(directory), families)
    columns = [_read_proteus_file(path) for path in paths]
    arrival_ms = np.concatenate([np.zeros(0, np.int64), *(arrival for arrival, _ in columns)])
    slo_ms = np.concatenate([np.zeros(0, np.int64), *(slo for _, slo in columns)])
    sizes = [len(arrival) for arrival, _ in columns]
    family = np.repeat(np.arange(len(paths), dtype=np.int32), sizes)
    order = np.argsort(arrival_ms, kind="stable")
    names = tuple(path.stem for path in paths)
    return Trace(names, arrival_ms[order] / 1000.0, family[order], slo_ms[order] / 1000.0)


def _proteus_paths(directory: Path, families: Sequence[str] | None) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(f"Proteus trace directory {directory} does not exist or is not a folder")
    available = sorted(directory.glob("*.txt"))
    if not available:
        raise ValueError(f"no <family>.txt files in Proteus trace directory {directory}")
    if families is None:
        return available
    stems = [path.stem for path in available]
    missing = [name for name in families if name not in stems]
    if missing:
        raise ValueError(
            f"no trace file for families {missing} in {directory}; available: {', '.join(stems)}"
        )
    return [directory / f"{name}.txt" for name in families]


def _read_proteus_file(path: Path) -> tuple[CountArray, CountArray]:
    """(arrival_ms, slo_ms) of one file. numpy's C parser reads 10^5 lines in ~10 ms; only
    when it fails (or finds bad values) does a line-by-line pass look for the culprit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: a family with no requests
            table = np.loadtxt(path, delimiter=",", dtype=np.int64, comments="#", ndmin=2)
    except ValueError:
        _raise_first_bad_line(path)
    if table.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if table.shape[1] != 3 or (table[:, 0] < 0).any() or (table[:, 2] <= 0).any():
        _raise_first_bad_line(path)
    return table[:, 0], table[:, 2]


def _raise_first_bad_line(path: Path) -> NoReturn:
    for number, line in enumerate(path.read_text(errors="replace").split("\n"), start=1):
        data = line.split("#", 1)[0].strip()
        problem = _proteus_line_problem(data) if data else None
        if problem:
            raise ValueError(
                f"{path}:{number}: {problem} in {line.strip()!r}; expected "
                f"'{_PROTEUS_LINE}', three integers such as '61,1,300'"
            )
    raise ValueError(f"{path}: not in the Proteus format '{_PROTEUS_LINE}'")


def _proteus_line_problem(data: str) -> str | None:
    fields = [text.strip() for text in data.split(",")]
    if len(fields) != 3:
        return f"{len(fields)} fields"
    try:
        arrival_ms, _, slo_ms = (int(text) for text in fields)
    except ValueError:
        return "a field that is not an integer"
    if arrival_ms < 0:
        return "a negative arrival time"
    return "a latency SLO <= 0" if slo_ms <= 0 else None


# ---------------------------------------------------------------------------- per-second counts


def read_counts(
    path: Path, seed: int = 0, slo_s: float = math.nan, family: str = "default"
) -> Trace:
    """Per-second request counts from a CSV, spread as Poisson arrivals.

    The header is `second,family,count` (one row per whole second and family) or
    `second,count` (one family, named `family`). Each row's `count` requests arrive at
    uniform random times inside [second, second + 1), which given the count is exactly a
    Poisson process. Families are sorted by name; repeated rows add up. Raises ValueError
    naming the line of a bad header or row.
    """
    one_family, rows = _read_count_rows(Path(path), family)
    names = [name for _, name, _ in rows]
    families = (family,) if one_family else tuple(sorted(set(names)))
    position = {name: k for k, name in enumerate(families)}
    index = np.array([position[name] for name in names], dtype=np.int32)
    counts = np.array([count for _, _, count in rows], dtype=np.int64)
    seconds = np.array([second for second, _, _ in rows], dtype=np.float64)
    rng = np.random.default_rng(seed)
    arrival_s = np.repeat(seconds, counts) + rng.random(int(counts.sum()))
    order = np.argsort(arrival_s, kind="stable")
    family_index = np.repeat(index, counts)[order]
    return Trace(families, arrival_s[order], family_index, np.full(len(order), slo_s))


def _read_count_rows(path: Path, family: str) -> tuple[bool, list[tuple[int, str, int]]]:
    """(whether the header is the one-family `second,count`, the rows parsed)."""
    with path.open(newline="") as file:
        rows = [(number, row) for number, row in enumerate(csv.reader(file), start=1) if row]
    header = [text.strip() for text in rows[0][1]] if rows else []
    if header not in (["second", "family", "count"], ["second", "count"]):
        raise ValueError(
            f"{path}:1: header {','.join(header)!r} must be 'second,family,count' or 'second,count'"
        )
    parsed = [_count_row(path, number, row, header, family) for number, row in rows[1:]]
    return header == ["second", "count"], parsed


def _count_row(
    path: Path, number: int, row: list[str], header: list[str], family: str
) -> tuple[int, str, int]:
    fields = [text.strip() for text in row]
    if len(fields) != len(header):
        raise ValueError(
            f"{path}:{number}: {len(fields)} fields in {','.join(row)!r}; "
            f"expected {len(header)} ({','.join(header)})"
        )
    values = dict(zip(header, fields, strict=True))
    name = values.get("family", family)
    if not name:
        raise ValueError(f"{path}:{number}: empty family name in {','.join(row)!r}")
    return _whole(path, number, "second", values), name, _whole(path, number, "count", values)


def _whole(path: Path, number: int, column: str, values: dict[str, str]) -> int:
    text = values[column]
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{path}:{number}: {column}={text!r} must be a whole number >= 0")
    return value


# ---------------------------------------------------------------------------- generators


def poisson(
    family: str, rate_rps: float, duration_s: float, seed: int, slo_s: float = math.nan
) -> Trace:
    """Homogeneous Poisson arrivals at `rate_rps` over [0, duration_s)."""
    _check_non_negative("rate_rps", rate_rps)
    _check_non_negative("duration_s", duration_s)
    rng = np.random.default_rng(seed)
    return _single(family, _uniform_arrivals(rng, rate_rps, 0.0, duration_s), slo_s)


def gamma_bursts(
    family: str, rate_rps: float, duration_s: float, cv: float, seed: int, slo_s: float = math.nan
) -> Trace:
    """A renewal process with Gamma inter-arrival times over [0, duration_s).

    The gaps have mean 1 / rate_rps and coefficient of variation `cv` (shape 1 / cv^2,
    scale cv^2 / rate_rps): cv = 1 is Poisson, cv > 1 bursty, cv < 1 smoother. The first
    arrival comes one gap after 0.
    """
    _check_non_negative("rate_rps", rate_rps)
    _check_non_negative("duration_s", duration_s)
    _check_positive("cv", cv)
    if rate_rps == 0 or duration_s == 0:
        return _single(family, _EMPTY, slo_s)
    rng = np.random.default_rng(seed)
    shape = 1.0 / cv**2
    chunk = int(rate_rps * duration_s * 1.1) + 16  # usually one draw reaches the end
    parts = [np.zeros(1)]
    while parts[-1][-1] < duration_s:
        gaps = rng.gamma(shape, 1.0 / (rate_rps * shape), size=chunk)
        parts.append(parts[-1][-1] + np.cumsum(gaps))
    arrival_s = np.concatenate(parts[1:])
    return _single(family, arrival_s[arrival_s < duration_s], slo_s)


def diurnal(
    family: str,
    mean_rps: float,
    amplitude: float,
    period_s: float,
    duration_s: float,
    seed: int,
    slo_s: float = math.nan,
) -> Trace:
    """Poisson arrivals at rate `mean_rps * (1 + amplitude * sin(2 pi t / period_s))`.

    Generated by thinning (Lewis & Shedler, 1979): Poisson candidates at the peak rate, each
    kept with probability rate(t) / peak. The mean rate is `mean_rps` over whole periods.
    """
    _check_non_negative("mean_rps", mean_rps)
    if not 0 <= amplitude <= 1:
        raise ValueError(f"amplitude={amplitude!r} must lie in [0, 1] (the rate stays >= 0)")
    _check_positive("period_s", period_s)
    _check_non_negative("duration_s", duration_s)
    rng = np.random.default_rng(seed)
    peak_rps = mean_rps * (1 + amplitude)
    candidates = _uniform_arrivals(rng, peak_rps, 0.0, duration_s)
    rate_rps = mean_rps * (1 + amplitude * np.sin(2 * np.pi * candidates / period_s))
    keep = rng.random(len(candidates)) * peak_rps < rate_rps
    return _single(family, candidates[keep], slo_s)


def step(
    family: str,
    rates_rps: Sequence[tuple[float, float]],
    duration_s: float,
    seed: int,
    slo_s: float = math.nan,
) -> Trace:
    """Piecewise-constant Poisson arrivals over [0, duration_s).

    `rates_rps` lists `(start_s, rate_rps)` segments: the first starts at 0, starts increase
    and lie before `duration_s`, and each rate holds until the next start.
    """
    _check_non_negative("duration_s", duration_s)
    _check_segments(rates_rps, duration_s)
    rng = np.random.default_rng(seed)
    ends = [start for start, _ in rates_rps[1:]] + [duration_s]
    parts = [
        _uniform_arrivals(rng, rate, start, end)
        for (start, rate), end in zip(rates_rps, ends, strict=True)
    ]
    return _single(family, np.concatenate([_EMPTY, *parts]), slo_s)


def from_schedule(family: str, times_s: npt.ArrayLike, slo_s: float = math.nan) -> Trace:
    """One family's trace from explicit arrival times (seconds >= 0, any order)."""
    return _single(family, np.sort(np.asarray(times_s, dtype=np.float64)), slo_s)


def _single(family: str, arrival_s: FloatArray, slo_s: float) -> Trace:
    num_requests = len(arrival_s)
    return Trace(
        (family,), arrival_s, np.zeros(num_requests, np.int32), np.full(num_requests, slo_s)
    )


def _uniform_arrivals(
    rng: np.random.Generator, rate_rps: float, start_s: float, end_s: float
) -> FloatArray:
    """Poisson arrivals on [start_s, end_s): a Poisson count, then uniform sorted times."""
    length_s = end_s - start_s
    num_requests = rng.poisson(rate_rps * length_s)
    return np.sort(start_s + rng.random(num_requests) * length_s)


def _check_segments(rates_rps: Sequence[tuple[float, float]], duration_s: float) -> None:
    if not rates_rps or rates_rps[0][0] != 0:
        raise ValueError(f"rates_rps={list(rates_rps)!r} must start with a segment at 0 s")
    starts = [start for start, _ in rates_rps]
    if any(later <= earlier for earlier, later in itertools.pairwise(starts)):
        raise ValueError(f"rates_rps starts {starts} must increase strictly")
    if len(starts) > 1 and starts[-1] >= duration_s:
        raise ValueError(f"rates_rps start {starts[-1]} s is not before duration_s={duration_s}")
    for _, rate in rates_rps:
        _check_non_negative("rate_rps", rate)


# ---------------------------------------------------------------------------- scenario registry


class TraceKind(StrEnum):
    """The `kind` of a trace in a scenario file."""

    PROTEUS = "proteus"
    COUNTS = "counts"
    POISSON = "poisson"
    GAMMA = "gamma"
    DIURNAL = "diurnal"
    STEP = "step"


@dataclass(frozen=True)
class _Builder:
    build: Callable[..., Trace]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ("seed", "slo_s")
    defaults: Mapping[str, Any] = field(default_factory=lambda: {"seed": 0})


def _build_proteus(
    path: Path, families: Sequence[str] | None = None, slo_s: float | None = None
) -> Trace:
    trace = read_proteus(path, families)
    return trace if slo_s is None else trace.with_slo(slo_s)


_BUILDERS: dict[TraceKind, _Builder] = {
    TraceKind.PROTEUS: _Builder(_build_proteus, ("path",), ("families", "slo_s"), {}),
    TraceKind.COUNTS: _Builder(read_counts, ("path",), ("seed", "slo_s", "family")),
    TraceKind.POISSON: _Builder(poisson, ("family", "rate_rps", "duration_s")),
    TraceKind.GAMMA: _Builder(gamma_bursts, ("family", "rate_rps", "duration_s", "cv")),
    TraceKind.DIURNAL: _Builder(
        diurnal, ("family", "mean_rps", "amplitude", "period_s", "duration_s")
    ),
    TraceKind.STEP: _Builder(step, ("family", "rates_rps", "duration_s")),
}


def build_trace(spec: Mapping[str, Any], base_dir: Path) -> Trace:
    """The trace a scenario file's mapping describes, e.g. `{kind: poisson, family: digits,
    rate_rps: 50, duration_s: 30, seed: 1}` or `{kind: proteus, path: traces/300}`.

    Relative paths resolve against `base_dir`; `seed` defaults to 0. Raises ValueError naming
    an unknown kind, a missing or unexpected key (with the expected keys) or a bad value.
    """
    kind = _kind_of(spec)
    builder = _BUILDERS[kind]
    _check_keys(kind, spec, builder)
    try:
        arguments = {
            key: _CONVERTERS[key](key, value, Path(base_dir))
            for key, value in spec.items()
            if key != "kind"
        }
        return builder.build(**{**builder.defaults, **arguments})
    except ValueError as error:
        raise ValueError(f"{kind} trace: {error}") from error


def build_traces(specs: Sequence[Mapping[str, Any]], base_dir: Path) -> Trace:
    """`merge` of `build_trace` over a scenario's list of trace mappings (at least one)."""
    if not specs:
        raise ValueError("no traces given: list at least one mapping with a 'kind' key")
    return merge(*(build_trace(spec, base_dir) for spec in specs))


def _kind_of(spec: Mapping[str, Any]) -> TraceKind:
    kinds = ", ".join(kind.value for kind in TraceKind)
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ValueError(f"a trace must be a mapping with a 'kind' key ({kinds}), got {spec!r}")
    try:
        return TraceKind(spec["kind"])
    except ValueError:
        raise ValueError(f"unknown trace kind {spec['kind']!r}; choose one of: {kinds}") from None


def _check_keys(kind: TraceKind, spec: Mapping[str, Any], builder: _Builder) -> None:
    keys = set(spec) - {"kind"}
    expected = f"required: {', '.join(builder.required)}; optional: {', '.join(builder.optional)}"
    missing = [key for key in builder.required if key not in keys]
    if missing:
        raise ValueError(f"{kind} trace is missing {', '.join(missing)} ({expected})")
    unexpected = sorted(keys - set(builder.required) - set(builder.optional), key=str)
    if unexpected:
        raise ValueError(f"{kind} trace has unexpected keys {unexpected} ({expected})")


def _as_float(key: str, value: Any, base_dir: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}={value!r} must be a number")
    return float(value)


def _as_int(key: str, value: Any, base_dir: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}={value!r} must be an integer")
    return value


def _as_name(key: str, value: Any, base_dir: Path) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}={value!r} must be a non-empty string")
    return value


def _as_names(key: str, value: Any, base_dir: Path) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"{key}={value!r} must be a list of family names")
    return [_as_name(key, name, base_dir) for name in value]


def _as_path(key: str, value: Any, base_dir: Path) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError(f"{key}={value!r} must be a path")
    return base_dir / value


def _as_segments(key: str, value: Any, base_dir: Path) -> list[tuple[float, float]]:
    if not isinstance(value, list) or not all(
        isinstance(pair, list | tuple) and len(pair) == 2 for pair in value
    ):
        raise ValueError(f"{key}={value!r} must be a list of [start_s, rate_rps] pairs")
    return [
        (_as_float(key, start, base_dir), _as_float(key, rate, base_dir)) for start, rate in value
    ]


_CONVERTERS: dict[str, Callable[[str, Any, Path], Any]] = {
    "path": _as_path,
    "families": _as_names,
    "family": _as_name,
    "seed": _as_int,
    "slo_s": _as_float,
    "rate_rps": _as_float,
    "mean_rps": _as_float,
    "amplitude": _as_float,
    "period_s": _as_float,
    "duration_s": _as_float,
    "cv": _as_float,
    "rates_rps": _as_segments,
}
