"""Traces named in scenario files: `TraceKind`, `build_trace` and `build_traces`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rheostat.sim.traces.generators import diurnal, gamma_bursts, poisson, step
from rheostat.sim.traces.readers import read_counts, read_proteus
from rheostat.sim.traces.trace import (
    Trace,
    merge,
)

__all__ = ["TraceKind", "build_trace", "build_traces"]


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
