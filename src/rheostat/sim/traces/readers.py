"""Traces from files: Proteus' per-family files and per-second counts from users' logs."""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from rheostat.sim.traces.trace import (
    _PROTEUS_LINE,
    CountArray,
    Trace,
)

__all__ = ["read_counts", "read_proteus"]


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
