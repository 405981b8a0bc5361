"""Run several policies on one trace and cluster, and report them against the oracle.

`compare` simulates each policy, computes the offline oracle bound on the same trace and
cluster (`rheostat.sim.oracle`: the lowest SLO-violation ratio any policy could reach, and
the best accuracy at that ratio) and returns the rows of the comparison table. `write`
saves what an operator reads: a markdown table (the oracle as its last row), a CSV of the
summaries, a CSV per policy over time and the Proteus-style plot over time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rheostat.sim.metrics import Summary, Timeline, summarize_by_family, timeline
from rheostat.sim.model import ClusterModel
from rheostat.sim.oracle import OracleBound, oracle_bound
from rheostat.sim.policies import PolicySpec
from rheostat.sim.report import (
    MetricRow,
    markdown_table,
    plot_timelines,
    write_csv,
    write_summary_csv,
)
from rheostat.sim.simulation import RunResult, SimSettings, simulate
from rheostat.sim.traces import Trace

__all__ = ["ORACLE_ROW", "Comparison", "compare", "oracle_for"]

ORACLE_ROW = "oracle bound"


@dataclass
class Comparison:
    runs: dict[str, RunResult]
    oracle: OracleBound | None

    def rows(self) -> dict[str, MetricRow]:
        rows: dict[str, MetricRow] = {name: run.summary for name, run in self.runs.items()}
        if self.oracle is not None:
            rows[ORACLE_ROW] = self.oracle
        return rows

    def table(self) -> str:
        return markdown_table(self.rows())

    def timelines(self, window_s: float = 1.0) -> dict[str, Timeline]:
        return {n: timeline(r.requests, r.duration_s, window_s) for n, r in self.runs.items()}

    def write(self, directory: Path, title: str) -> list[Path]:
        """Write the table, CSVs and plot into `directory`; returns the files written."""
        directory.mkdir(parents=True, exist_ok=True)
        written = [directory / "summary.md", directory / "summary.csv", directory / "timeline.png"]
        written[0].write_text(f"# {title}\n\n{self.table()}\n")
        summaries: dict[str, Summary] = {n: r.summary for n, r in self.runs.items()}
        for name, run in self.runs.items():
            for family, summary in summarize_by_family(run.requests, run.duration_s).items():
                summaries[f"{name}/{family}"] = summary
        write_summary_csv(summaries, written[1])
        lines = self.timelines()
        for name, line in lines.items():
            path = directory / f"timeline_{name}.csv"
            write_csv(line, path)
            written.append(path)
        plot_timelines(lines, written[2], title)
        return written


def oracle_for(model: ClusterModel, trace: Trace) -> OracleBound:
    """The oracle bound of `trace` on `model`'s cluster (median latencies, normalised
    accuracies, each family's SLO)."""
    accuracy = model.normalized_accuracy()
    variants = [
        dataclasses.replace(v, accuracy=accuracy[f"{v.family}.{v.name}"]) for v in model.median
    ]
    counts: dict[str, int] = {}
    for device in model.devices:
        counts[device.device_type] = counts.get(device.device_type, 0) + 1
    planned = {v.family for v in variants}
    slo = {f: model.slo_s.get(f, 0.0) for f in trace.families}
    demand = trace.counts(1.0)
    keep = [i for i, f in enumerate(trace.families) if f in planned and slo[f] > 0]
    families = [trace.families[i] for i in keep]
    return oracle_bound(
        demand[:, keep], 1.0, counts, variants, {f: slo[f] for f in families}, families
    )


def compare(
    model: ClusterModel,
    trace: Trace,
    policies: Sequence[PolicySpec],
    settings: SimSettings | None = None,
    with_oracle: bool = True,
    progress: Callable[[RunResult], None] | None = None,
) -> Comparison:
    runs: dict[str, RunResult] = {}
    for spec in policies:
        runs[spec.name] = simulate(model, trace, spec, settings)
        if progress is not None:
            progress(runs[spec.name])
    oracle = oracle_for(model, trace) if with_oracle else None
    return Comparison(runs, oracle)
