"""Run metrics on a hand-built log where every number is worked out by hand.

The log: families a and b, a 20-s trace, two 10-s windows.

    #  fam  arrival  status    accuracy  finish  latency
    1  a     1       ON_TIME   1.0       1.25    0.25
    2  a     2       ON_TIME   0.75      2.5     0.5
    3  b     3       ON_TIME   0.5       3.75    0.75
    4  b     4       LATE      0.25      5.0     1.0
    5  a     5       DROPPED
    6  a    11       ON_TIME   0.5      11.25    0.25
    7  b    12       ON_TIME   0.75     12.5     0.5
    8  b    13       SHED
    9  a    14       LATE      0.75     16.0     2.0
   10  b    15       DROPPED

All accuracies and latencies are exact binary fractions, so sums are exact.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest

from rheostat.sim.metrics import (
    TIMELINE_COLUMNS,
    RequestLog,
    Requests,
    Status,
    Summary,
    summarize,
    summarize_by_family,
    timeline,
    timeline_by_family,
)
from rheostat.sim.report import markdown_table, plot_timelines, write_csv, write_summary_csv

A, B = 0, 1
ROWS = [
    (A, 1.0, Status.ON_TIME, 1.0, 1.25),
    (A, 2.0, Status.ON_TIME, 0.75, 2.5),
    (B, 3.0, Status.ON_TIME, 0.5, 3.75),
    (B, 4.0, Status.LATE, 0.25, 5.0),
    (A, 5.0, Status.DROPPED, math.nan, math.nan),
    (A, 11.0, Status.ON_TIME, 0.5, 11.25),
    (B, 12.0, Status.ON_TIME, 0.75, 12.5),
    (B, 13.0, Status.SHED, math.nan, math.nan),
    (A, 14.0, Status.LATE, 0.75, 16.0),
    (B, 15.0, Status.DROPPED, math.nan, math.nan),
]
NAN = math.nan


def hand_log() -> Requests:
    log = RequestLog(families=("a", "b"))
    for row in ROWS:
        log.record(*row)
    return log.freeze()


def linear_percentile(sorted_values: list[float], q: float) -> float:
    """numpy's default (linear) percentile, written out."""
    position = q / 100 * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (position - low) * (sorted_values[high] - sorted_values[low])


def test_freeze_gives_typed_columns() -> None:
    requests = hand_log()
    assert len(requests) == 10
    assert requests.arrival_s.dtype == np.float64
    assert requests.family.dtype == np.int32
    assert requests.status.dtype == np.uint8
    assert requests.accuracy.dtype == np.float32
    assert requests.finish_s.dtype == np.float64
    assert requests.status.tolist() == [0, 0, 0, 1, 2, 0, 0, 3, 1, 2]
    assert np.isnan(requests.accuracy[[4, 7, 9]]).all()


def test_summarize_overall() -> None:
    summary = summarize(hand_log(), duration_s=20.0)
    # On time: 1, 2, 3, 6, 7 -> 5 / 20 s; accuracy (1 + .75 + .5 + .5 + .75) / 5 = 0.7.
    # Windows: [0, 10) (1 + .75 + .5) / 3 = 0.75, [10, 20) (.5 + .75) / 2 = 0.625.
    # Answered latencies sorted: .25 .25 .5 .5 .75 1 2.
    latencies = [0.25, 0.25, 0.5, 0.5, 0.75, 1.0, 2.0]
    assert summary == Summary(
        num_requests=10,
        throughput_qps=0.25,
        effective_accuracy_pct=70.0,
        max_accuracy_drop_pct=37.5,
        slo_violation_ratio=0.5,
        late=2,
        dropped=2,
        shed=1,
        p50_latency_s=0.5,
        p99_latency_s=linear_percentile(latencies, 99),
    )
    assert summary.p99_latency_s == pytest.approx(1.94)


def test_summarize_by_family() -> None:
    by_family = summarize_by_family(hand_log(), duration_s=20.0)
    assert list(by_family) == ["a", "b"]
    # a: on time 1, 2, 6; windows (1 + .75) / 2 = .875 and .5; latencies .25 .25 .5 2.
    assert by_family["a"] == Summary(
        num_requests=5,
        throughput_qps=0.15,
        effective_accuracy_pct=75.0,
        max_accuracy_drop_pct=50.0,
        slo_violation_ratio=0.4,
        late=1,
        dropped=1,
        shed=0,
        p50_latency_s=0.375,
        p99_latency_s=linear_percentile([0.25, 0.25, 0.5, 2.0], 99),
    )
    # b: on time 3, 7; windows .5 and .75; latencies .5 .75 1.
    assert by_family["b"] == Summary(
        num_requests=5,
        throughput_qps=0.1,
        effective_accuracy_pct=62.5,
        max_accuracy_drop_pct=50.0,
        slo_violation_ratio=0.6,
        late=1,
        dropped=1,
        shed=1,
        p50_latency_s=0.75,
        p99_latency_s=linear_percentile([0.5, 0.75, 1.0], 99),
    )


def test_throughput_divides_by_trace_duration_not_active_span() -> None:
    summary = summarize(hand_log(), duration_s=50.0)
    assert summary.throughput_qps == 0.1
    assert summary.max_accuracy_drop_pct == 37.5  # the three empty windows do not count


def test_max_drop_skips_windows_that_served_nothing() -> None:
    # 5-s windows: [0, 5) .75, [5, 10) only a drop, [10, 15) .625, [15, 20) only a drop.
    assert summarize(hand_log(), duration_s=20.0, window_s=5.0).max_accuracy_drop_pct == 37.5


def test_nothing_served_gives_nan_not_zero() -> None:
    log = RequestLog(families=("a",))
    log.record(A, 1.0, Status.SHED)
    log.record(A, 2.0, Status.LATE, 1.0, 3.0)
    summary = summarize(log.freeze(), duration_s=10.0)
    assert summary.throughput_qps == 0.0
    assert math.isnan(summary.effective_accuracy_pct)
    assert math.isnan(summary.max_accuracy_drop_pct)
    assert summary.slo_violation_ratio == 1.0
    assert (summary.p50_latency_s, summary.p99_latency_s) == (1.0, 1.0)


def test_empty_log() -> None:
    summary = summarize(RequestLog(families=("a",)).freeze(), duration_s=10.0)
    assert (summary.num_requests, summary.throughput_qps) == (0, 0.0)
    for value in (summary.slo_violation_ratio, summary.p50_latency_s, summary.p99_latency_s):
        assert math.isnan(value)


def test_timeline_per_window() -> None:
    line = timeline(hand_log(), duration_s=20.0, window_s=10.0)
    assert line.window_s == 10.0
    assert line.t_s.tolist() == [0.0, 10.0]
    assert line.demand_qps.tolist() == [0.5, 0.5]
    assert line.throughput_qps.tolist() == [0.3, 0.2]
    assert line.effective_accuracy_pct.tolist() == [75.0, 62.5]
    assert line.violation_ratio.tolist() == [0.4, 0.6]


def test_timeline_nan_where_nothing_served_or_arrived() -> None:
    # 5-s windows over 25 s: [5, 10) holds only a drop, [20, 25) holds nothing.
    line = timeline(hand_log(), duration_s=25.0, window_s=5.0)
    assert line.t_s.tolist() == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert line.demand_qps.tolist() == [0.8, 0.2, 0.8, 0.2, 0.0]
    assert line.throughput_qps.tolist() == [0.6, 0.0, 0.4, 0.0, 0.0]
    np.testing.assert_array_equal(line.effective_accuracy_pct, [75.0, NAN, 62.5, NAN, NAN])
    np.testing.assert_array_equal(line.violation_ratio, [0.25, 1.0, 0.5, 1.0, NAN])


def test_timeline_last_window_rates_use_its_real_width() -> None:
    log = RequestLog(families=("a",))
    log.record(A, 10.5, Status.ON_TIME, 1.0, 10.75)
    line = timeline(log.freeze(), duration_s=12.0, window_s=10.0)
    assert line.demand_qps.tolist() == [0.0, 0.5]  # one request in a 2-s window


def test_arrival_at_duration_falls_in_last_window() -> None:
    log = RequestLog(families=("a",))
    log.record(A, 20.0, Status.ON_TIME, 1.0, 20.5)
    assert timeline(log.freeze(), duration_s=20.0, window_s=10.0).demand_qps.tolist() == [0, 0.1]


def test_timeline_by_family() -> None:
    lines = timeline_by_family(hand_log(), duration_s=20.0, window_s=10.0)
    assert list(lines) == ["a", "b"]
    assert lines["a"].demand_qps.tolist() == [0.3, 0.2]
    assert lines["a"].effective_accuracy_pct.tolist() == [87.5, 50.0]
    assert lines["b"].throughput_qps.tolist() == [0.1, 0.1]
    assert lines["b"].violation_ratio.tolist() == [0.5, 2 / 3]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((2, 1.0, Status.SHED, NAN, NAN), "request 0: family must index families"),
        ((A, -1.0, Status.SHED, NAN, NAN), "request 0: arrival_s must be finite and >= 0"),
        ((A, 1.0, Status.ON_TIME, NAN, 2.0), "needs an accuracy in \\[0, 1\\], got nan"),
        ((A, 1.0, Status.LATE, 1.5, 2.0), "needs an accuracy in \\[0, 1\\], got 1.5"),
        ((A, 1.0, Status.ON_TIME, 1.0, 0.5), "needs finish_s >= arrival_s, got 0.5"),
        ((A, 1.0, Status.DROPPED, 0.5, NAN), "has accuracy NaN, got 0.5"),
    ],
)
def test_freeze_rejects_bad_rows(
    row: tuple[int, float, Status, float, float], message: str
) -> None:
    log = RequestLog(families=("a",))
    log.record(*row)
    with pytest.raises(ValueError, match=message):
        log.freeze()


def test_bad_arguments_raise() -> None:
    requests = hand_log()
    with pytest.raises(ValueError, match="duration_s=0"):
        summarize(requests, duration_s=0.0)
    with pytest.raises(ValueError, match="window_s=-1"):
        timeline(requests, duration_s=20.0, window_s=-1.0)
    with pytest.raises(ValueError, match=r"arrived at 15\.0 s, past duration_s=10"):
        summarize(requests, duration_s=10.0)
    with pytest.raises(ValueError, match="must be unique"):
        RequestLog(families=("a", "a")).freeze()
    with pytest.raises(ValueError, match="one length each"):
        Requests(("a",), np.zeros(2), np.zeros(1), np.zeros(2), np.zeros(2), np.zeros(2))


@dataclass(frozen=True)
class OracleRow:
    throughput_qps: float
    effective_accuracy_pct: float
    max_accuracy_drop_pct: float
    slo_violation_ratio: float


def test_markdown_table_text() -> None:
    proteus = Summary(
        num_requests=100,
        throughput_qps=12.34,
        effective_accuracy_pct=95.06,
        max_accuracy_drop_pct=7.0,
        slo_violation_ratio=0.01234,
        late=1,
        dropped=2,
        shed=3,
        p50_latency_s=0.1,
        p99_latency_s=0.2,
    )
    oracle = OracleRow(20.0, 99.99, 0.0, 0.0)
    assert markdown_table({"proteus": proteus, "oracle|bound": oracle}) == (
        "| policy | throughput (QPS) | effective accuracy (%) | max accuracy drop (%) "
        "| SLO violation ratio | late | dropped | shed |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        "| proteus | 12.3 | 95.1 | 7.0 | 0.0123 | 1 | 2 | 3 |\n"
        "| oracle\\|bound | 20.0 | 100.0 | 0.0 | 0.0000 | - | - | - |\n"
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_timeline_csv_round_trip(tmp_path: Path) -> None:
    line = timeline(hand_log(), duration_s=25.0, window_s=5.0)
    path = tmp_path / "timeline.csv"
    write_csv(line, path)
    rows = read_rows(path)
    assert list(rows[0]) == list(TIMELINE_COLUMNS)
    assert len(rows) == 5
    for column in TIMELINE_COLUMNS:
        read = [float(row[column]) for row in rows]
        np.testing.assert_array_equal(read, getattr(line, column))


def test_summary_csv_round_trip(tmp_path: Path) -> None:
    summaries = summarize_by_family(hand_log(), duration_s=20.0)
    path = tmp_path / "summary.csv"
    write_summary_csv(summaries, path)
    rows = read_rows(path)
    assert [row["policy"] for row in rows] == ["a", "b"]
    for row, summary in zip(rows, summaries.values(), strict=True):
        read = {
            spec.name: (int if spec.type == "int" else float)(row[spec.name])
            for spec in fields(Summary)
        }
        assert Summary(**read) == summary


def test_plot_timelines_writes_a_drawn_png(tmp_path: Path) -> None:
    from matplotlib.image import imread

    requests = hand_log()
    shed_all = RequestLog(families=requests.families)
    for family, arrival_s, *_ in ROWS:
        shed_all.record(family, arrival_s, Status.SHED)
    timelines = {
        "proteus": timeline(requests, duration_s=30.0, window_s=1.0),
        "shed everything": timeline(shed_all.freeze(), duration_s=30.0, window_s=1.0),
    }
    path = tmp_path / "timelines.png"
    plot_timelines(timelines, path, title="hand log")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.ndim == 3
    assert pixels.shape[:2] == (900, 800)
    assert float(pixels.var()) > 0.01


def test_plot_timelines_needs_a_timeline(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timelines is empty"):
        plot_timelines({}, tmp_path / "x.png", title="none")
