"""Reports of a run: CSV files, a markdown table and plots over time, like Proteus' Fig. 4/5.

Split from `rheostat.sim.metrics` (which computes the numbers) so that module stays about
the definitions; this one only formats and draws them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import astuple, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from rheostat.sim.metrics import TIMELINE_COLUMNS, FloatArray, Summary, Timeline, ratio

__all__ = ["MetricRow", "markdown_table", "plot_timelines", "write_csv", "write_summary_csv"]


def write_csv(timeline: Timeline, path: Path) -> None:
    """One row per window with the columns `TIMELINE_COLUMNS`; NaN is written as "nan".

    Floats are written in their shortest round-trip form, so `float()` reads them back
    exactly.
    """
    columns = [getattr(timeline, name).tolist() for name in TIMELINE_COLUMNS]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(TIMELINE_COLUMNS)
        writer.writerows(zip(*columns, strict=True))


def write_summary_csv(rows: Mapping[str, Summary], path: Path) -> None:
    """One row per policy: a "policy" column, then every `Summary` field in order."""
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["policy", *(spec.name for spec in fields(Summary))])
        writer.writerows([name, *astuple(summary)] for name, summary in rows.items())


class MetricRow(Protocol):
    """What `markdown_table` needs of a row: a `Summary`, or a bound such as an oracle's.

    Rows that also have `late`, `dropped` and `shed` show them; others show "-".
    """

    @property
    def throughput_qps(self) -> float: ...
    @property
    def effective_accuracy_pct(self) -> float: ...
    @property
    def max_accuracy_drop_pct(self) -> float: ...
    @property
    def slo_violation_ratio(self) -> float: ...


_TABLE_HEADER = (
    "throughput (QPS)",
    "effective accuracy (%)",
    "max accuracy drop (%)",
    "SLO violation ratio",
    "late",
    "dropped",
    "shed",
)


def markdown_table(rows: Mapping[str, MetricRow], name_header: str = "policy") -> str:
    """A markdown table, one row per name in `rows` order, ending in a newline.

    QPS and percentages print with 1 decimal, the ratio with 4, NaN as "nan".
    """
    lines = [
        _markdown_line([name_header, *_TABLE_HEADER]),
        _markdown_line(["---", *["---:"] * len(_TABLE_HEADER)]),
    ]
    lines += [_markdown_line([_escape(name), *_row_cells(row)]) for name, row in rows.items()]
    return "\n".join(lines) + "\n"


def _markdown_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _escape(name: str) -> str:
    return name.replace("|", "\\|")


def _row_cells(row: MetricRow) -> list[str]:
    counts = [getattr(row, name, None) for name in ("late", "dropped", "shed")]
    return [
        f"{row.throughput_qps:.1f}",
        f"{row.effective_accuracy_pct:.1f}",
        f"{row.max_accuracy_drop_pct:.1f}",
        f"{row.slo_violation_ratio:.4f}",
        *("-" if count is None else str(count) for count in counts),
    ]


def plot_timelines(
    timelines: Mapping[str, Timeline], path: Path, title: str, smooth_s: float = 10.0
) -> None:
    """One PNG, three panels over a shared time axis, like Proteus' Fig. 4 and 5.

    (a) demand (grey, from the first timeline: all policies are meant to replay one trace)
    and each policy's throughput, (b) effective accuracy, (c) SLO violation ratio; every
    curve a centered `smooth_s` moving average that skips NaN windows. Draws on a bare
    `Figure` with the Agg canvas, never through pyplot, so no global figure is left open and
    the process's backend is untouched.
    """
    if not timelines:
        raise ValueError("timelines is empty; pass at least one policy's Timeline")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 9.0), layout="constrained")
    FigureCanvasAgg(figure)
    demand_axes, accuracy_axes, violation_axes = figure.subplots(3, 1, sharex=True)
    first = next(iter(timelines.values()))
    demand = _smooth(first, first.demand_qps, smooth_s)
    demand_axes.plot(first.t_s, demand, color="grey", label="demand")
    for index, (name, line) in enumerate(timelines.items()):
        style = {"color": f"C{index % 10}", "label": name}
        demand_axes.plot(line.t_s, _smooth(line, line.throughput_qps, smooth_s), **style)
        accuracy_axes.plot(line.t_s, _smooth(line, line.effective_accuracy_pct, smooth_s), **style)
        violation_axes.plot(line.t_s, _smooth(line, line.violation_ratio, smooth_s), **style)
    average = f"{smooth_s:g}-s moving average"
    demand_axes.set_ylabel(f"demand / throughput (QPS)\n{average}")
    accuracy_axes.set_ylabel(f"effective accuracy (%)\n{average}")
    violation_axes.set_ylabel(f"SLO violation ratio\n{average}")
    violation_axes.set_xlabel("time (s)")
    demand_axes.legend(loc="upper right", fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, format="png", dpi=100)


def _smooth(line: Timeline, values: FloatArray, smooth_s: float) -> FloatArray:
    return _moving_average(values, max(1, round(smooth_s / line.window_s)))


def _moving_average(values: FloatArray, width: int) -> FloatArray:
    """Centered mean over `width` windows skipping NaN; NaN where the span has no number."""
    if not values.size:
        return values.copy()
    width = min(width, values.size)  # np.convolve's "same" mode would lengthen the output
    finite = np.isfinite(values)
    kernel = np.ones(width)
    total = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(np.float64), kernel, mode="same")
    return ratio(total, count)
