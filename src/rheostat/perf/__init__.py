"""`rheostat perf`: load generation and measurement for any Open Inference Protocol server.

In the spirit of Triton's perf_analyzer. A run reads the model's metadata, builds one valid
request (`request`: random or zero data, encoded once, JSON or binary) and then, level by
level, drives the server with a `ClosedLoop` (N requests always in flight) or an `OpenLoop`
(arrivals at R req/s, constant or Poisson, sent whatever the answers) (`load`). The driver
(`driver`) cuts measurement windows out of each level's continuous run and folds the
outcomes into a `LevelResult` (`summary`, pure); `report` renders table, CSV and plot.

    load.py      ranges, ClosedLoop, OpenLoop            (when to send)
    request.py   metadata -> inputs -> one InferCall     (what to send)
    summary.py   Sample -> LevelResult, stability        (pure folds)
    driver.py    measure_level, run_perf                 (the only I/O and clock reads)
    report.py    table, CSV, plot, progress bar
"""

from rheostat.perf.driver import Measurement, TargetError, measure_level, run_perf
from rheostat.perf.load import (
    ClosedLoop,
    Distribution,
    Load,
    OpenLoop,
    arrival_offsets_s,
    build_loads,
    choice,
    parse_range,
)
from rheostat.perf.report import (
    ProgressBar,
    csv_row,
    notes,
    summary_table,
    write_csv,
    write_plot,
)
from rheostat.perf.request import InferCall, InputData, InputSpec, Target, concrete_shape
from rheostat.perf.summary import LevelResult, Sample, is_stable, percentile_of, summarize

__all__ = [
    "ClosedLoop",
    "Distribution",
    "InferCall",
    "InputData",
    "InputSpec",
    "LevelResult",
    "Load",
    "Measurement",
    "OpenLoop",
    "ProgressBar",
    "Sample",
    "Target",
    "TargetError",
    "arrival_offsets_s",
    "build_loads",
    "choice",
    "concrete_shape",
    "csv_row",
    "is_stable",
    "measure_level",
    "notes",
    "parse_range",
    "percentile_of",
    "run_perf",
    "summarize",
    "summary_table",
    "write_csv",
    "write_plot",
]
