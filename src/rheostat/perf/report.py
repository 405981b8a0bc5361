"""What a run leaves behind: the rich summary table, a CSV row per level, the plot."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from rich.progress import Progress, TaskID
from rich.table import Table

from rheostat.perf.load import Load
from rheostat.perf.summary import LevelResult

__all__ = ["ProgressBar", "csv_row", "notes", "summary_table", "write_csv", "write_plot"]

_SHORTFALL = 0.9  # an open loop that sent less than this share of its rate fell behind


def _pct_name(pct: float) -> str:
    return f"p{pct:g}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def csv_row(result: LevelResult, percentiles: Sequence[float]) -> dict[str, str]:
    """All of one level's numbers as a CSV row (empty cells where nothing was measured)."""
    other = sum(n for status, n in result.errors.items() if status != 429)
    row = {
        "mode": result.mode,
        "level": f"{result.level:g}",
        "batch_size": str(result.batch_size),
        "window_s": f"{result.window_s:.3f}",
        "num_sent": str(result.num_sent),
        "num_ok": str(result.num_ok),
        "throughput_rps": f"{result.throughput_rps:.3f}",
        "throughput_infer_per_s": f"{result.infer_per_s:.3f}",
        "latency_avg_ms": _ms(result.mean_ms),
    }
    row |= {f"latency_{_pct_name(p)}_ms": _ms(result.latency_ms.get(p)) for p in percentiles}
    return row | {
        "num_429": str(result.errors.get(429, 0)),
        "retry_after_share": _share(result.retry_after_share),
        "num_other_errors": str(other),
        "errors": ";".join(f"{status}:{n}" for status, n in result.errors.items()),
        "server_queue_ms": _ms(result.queue_ms),
        "server_compute_ms": _ms(result.compute_ms),
        "server_total_ms": _ms(result.total_ms),
        "slo_met_share": _share(result.slo_met_share),
        "variants": ";".join(f"{name}:{share:.4f}" for name, share in result.variants.items()),
        "stable": "" if result.stable is None else str(result.stable).lower(),
    }


def write_csv(path: Path, results: Sequence[LevelResult], percentiles: Sequence[float]) -> None:
    rows = [csv_row(result, percentiles) for result in results]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _percent(share: float) -> str:
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def _errors_cell(result: LevelResult) -> str:
    cells = []
    for status, n in result.errors.items():
        name = "no answer" if status == 0 else str(status)
        extra = f" (Retry-After {result.retry_after_share:.0%})" if status == 429 else ""
        cells.append(f"{name} x{n}{extra}")
    return ", ".join(cells) or "0"


def _server_cell(result: LevelResult) -> str:
    split = (result.queue_ms, result.compute_ms, result.total_ms)
    return (
        "" if split == (None,) * 3 else " / ".join("-" if v is None else f"{v:.2f}" for v in split)
    )


def summary_table(results: Sequence[LevelResult], percentiles: Sequence[float]) -> Table:
    """One row per level: throughput, latency percentiles, errors, the server's split."""
    mode = results[0].mode if results else "concurrency"
    table = Table(title=f"{'concurrency' if mode == 'concurrency' else 'request rate'} sweep")
    columns = ["concurrency" if mode == "concurrency" else "rate", "infer/s"]
    columns += [f"{_pct_name(p)} ms" for p in percentiles] + ["avg ms", "errors"]
    for column in [*columns, "server queue / compute / total ms", "SLO met", "variants"]:
        table.add_column(column, justify="left" if column == "variants" else "right")
    for r in results:
        table.add_row(
            r.label, f"{r.infer_per_s:.1f}",
            *[f"{r.latency_ms[p]:.2f}" if p in r.latency_ms else "-" for p in percentiles],
            f"{r.mean_ms:.2f}" if r.mean_ms is not None else "-", _errors_cell(r),
            _server_cell(r), "" if r.slo_met_share is None else f"{r.slo_met_share:.0%}",
            ", ".join(f"{n.split('.', 1)[-1]} {_percent(s)}" for n, s in r.variants.items()),
        )  # fmt: skip
    return table


def _fell_behind(result: LevelResult) -> bool:
    """Sent under 90 % of the rate, beyond two standard deviations of Poisson noise."""
    expected = result.level * result.window_s
    return result.num_sent < _SHORTFALL * expected - 2 * math.sqrt(expected)


def notes(results: Sequence[LevelResult]) -> list[str]:
    """Lines to print under the table: one error message per status and level, and the open
    loops whose client fell behind its schedule (their latencies understate the load)."""
    lines = []
    for r in results:
        if r.mode == "request_rate" and _fell_behind(r):
            lines.append(
                f"{r.label}: the client sent only {r.num_sent / r.window_s:.1f} req/s; it cannot "
                "keep up (CPU bound, or --max-connections too small), so this level is not the "
                "rate asked"
            )
        lines += [f"{r.label}: {s or 'no answer'}: {m}" for s, m in r.error_examples.items()]
    return lines


def write_plot(path: Path, results: Sequence[LevelResult], percentile: float, title: str) -> None:
    """Throughput against latency, one point per level (the chosen percentile and p50)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    measured = [r for r in results if r.latency_ms]
    x = [r.infer_per_s for r in measured]
    for pct, style in ((percentile, "o-"), (50.0, "s--")):
        axes.plot(x, [r.latency_ms[pct] for r in measured], style, label=_pct_name(pct))
    for r, x_value in zip(measured, x, strict=True):
        axes.annotate(r.label, (x_value, r.latency_ms[percentile]), textcoords="offset points",
                      xytext=(4, 4), fontsize=8)  # fmt: skip
    axes.set_xlabel("throughput (infer/s)")
    axes.set_ylabel("latency (ms)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=110, bbox_inches="tight")


class ProgressBar:
    """Adapts a rich `Progress` to the driver's callback: one bar per level."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[Load, TaskID] = {}

    def __call__(self, load: Load, elapsed_s: float, expected_s: float) -> None:
        if load not in self._tasks:
            name = (
                f"concurrency {load.level:g}"
                if load.mode == "concurrency"
                else f"{load.level:g} req/s"
            )
            self._tasks[load] = self._progress.add_task(name, total=expected_s)
        task = self._tasks[load]
        self._progress.update(task, completed=elapsed_s, total=max(expected_s, elapsed_s))
