"""Arrival traces: the Trace container, the file readers, the generators and the registry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rheostat.sim.traces import (
    Trace,
    TraceKind,
    build_trace,
    build_traces,
    diurnal,
    from_schedule,
    gamma_bursts,
    merge,
    poisson,
    read_counts,
    read_proteus,
    step,
)

PROTEUS_DIR = (
    Path(__file__).resolve().parents[3]
    / "shared/data/proteus/traces/twitter/asplos/zipf_exponential/300"
)


def same(left: Trace, right: Trace) -> bool:
    return (
        left.families == right.families
        and np.array_equal(left.arrival_s, right.arrival_s)
        and np.array_equal(left.family, right.family)
        and np.array_equal(left.slo_s, right.slo_s, equal_nan=True)
    )


def two_families() -> Trace:
    return Trace(("a", "b"), [0.0, 0.5, 1.2, 2.0, 3.9], [0, 1, 0, 0, 1], [0.1, 0.2, 0.1, 0.1, 0.2])


# ---------------------------------------------------------------------------- Trace


def test_a_trace_copies_its_columns_and_makes_them_read_only() -> None:
    times = np.array([0.0, 1.0])
    trace = Trace(("a",), times, np.array([0, 0], dtype=np.int64), [math.nan, 0.3])
    times[0] = 5.0
    assert trace.arrival_s.tolist() == [0.0, 1.0]
    assert trace.family.dtype == np.int32 and trace.arrival_s.dtype == np.float64
    assert not trace.arrival_s.flags.writeable
    assert len(trace) == 2
    assert repr(trace) == "Trace(2 requests over 2 s, families=['a'])"


@pytest.mark.parametrize(
    ("families", "arrival_s", "family", "slo_s", "message"),
    [
        (("a",), [0.0, 1.0], [0], [0.1, 0.1], r"one length .* got 2, 1 and 2"),
        (("a",), [1.0, 0.5], [0, 0], [0.1, 0.1], r"sorted ascending: arrival_s\[1\]=0.5"),
        (("a",), [-1.0], [0], [0.1], r"must be >= 0 .* got -1.0"),
        (("a",), [math.inf], [0], [0.1], "must be finite, got inf"),
        (("a", "b"), [0.0], [2], [0.1], r"family index 2 is out of range for 2 families"),
        (("a",), [0.0], [-1], [0.1], "family index -1"),
        (("a",), [0.0], [0.0], [0.1], "integer indices"),
        (("a",), [0.0], [0], [0.0], r"slo_s must be > 0 seconds or NaN .* got 0.0"),
        (("a", "a"), [], [], [], "unique"),
        (("",), [], [], [], "non-empty strings"),
        (("a",), [[0.0]], [0], [0.1], r"one-dimensional .* \(1, 1\)"),
    ],
)
def test_a_bad_trace_is_refused_naming_the_value(
    families: tuple[str, ...],
    arrival_s: list[float],
    family: list[int],
    slo_s: list[float],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        Trace(families, arrival_s, family, slo_s)  # type: ignore[arg-type]


def test_duration_is_the_first_whole_second_after_the_last_arrival() -> None:
    assert Trace((), [], [], []).duration_s == 0.0  # type: ignore[arg-type]
    assert from_schedule("a", [0.2, 3.9]).duration_s == 4.0
    assert from_schedule("a", [4.0]).duration_s == 5.0  # [0, 5) holds the arrival at 4.0


def test_counts_per_window_and_family() -> None:
    trace = two_families()
    assert trace.counts().tolist() == [[1, 1], [1, 0], [1, 0], [0, 1]]
    assert trace.counts(2.0).tolist() == [[2, 1], [1, 1]]
    assert trace.counts(3.0).tolist() == [[3, 1], [0, 1]]
    assert trace.rates_rps(2.0).tolist() == [[1.0, 0.5], [0.5, 0.5]]
    assert trace.counts(0.1).shape == (40, 2)
    assert trace.counts(0.1).sum() == 5
    assert from_schedule("a", [20.5]).counts(0.7).shape == (30, 1)  # 21 / 0.7 > 30 in floats
    assert Trace(("a",), [], [], []).counts().shape == (0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window_s=0"):
        trace.counts(0)


def test_mean_rates_are_over_the_whole_duration() -> None:
    assert two_families().mean_rates_rps() == {"a": 0.75, "b": 0.5}
    assert Trace(("a",), [], [], []).mean_rates_rps() == {"a": 0.0}  # type: ignore[arg-type]


def test_head_keeps_the_arrivals_before_a_time() -> None:
    head = two_families().head(2.0)
    assert head.families == ("a", "b")
    assert head.arrival_s.tolist() == [0.0, 0.5, 1.2]
    assert head.family.tolist() == [0, 1, 0]
    assert head.slo_s.tolist() == [0.1, 0.2, 0.1]
    assert len(two_families().head(0)) == 0


def test_scaled_compresses_time_and_keeps_slos() -> None:
    fast = two_families().scaled(2.0)
    assert fast.arrival_s.tolist() == [0.0, 0.25, 0.6, 1.0, 1.95]
    assert fast.slo_s.tolist() == [0.1, 0.2, 0.1, 0.1, 0.2]
    with pytest.raises(ValueError, match="speed=-1"):
        two_families().scaled(-1)


def test_with_slo_replaces_every_slo() -> None:
    assert two_families().with_slo(0.5).slo_s.tolist() == [0.5] * 5
    assert np.isnan(two_families().with_slo(math.nan).slo_s).all()
    with pytest.raises(ValueError, match=r"got -0\.5"):
        two_families().with_slo(-0.5)


def test_merge_unites_families_by_name_and_sorts_stably() -> None:
    left = Trace(("a", "b"), [0.0, 1.0], [1, 0], [0.1, 0.2])
    right = Trace(("c", "a"), [0.5, 1.0], [1, 0], [0.3, 0.4])
    merged = merge(left, right)
    assert merged.families == ("a", "b", "c")
    assert merged.arrival_s.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert merged.family.tolist() == [1, 0, 0, 2]  # the tie at 1.0 keeps argument order
    assert merged.slo_s.tolist() == [0.1, 0.3, 0.2, 0.4]
    assert same(merge(), Trace((), [], [], []))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- Proteus files


def write_proteus(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / f"{name}.txt").write_text(text)
    return directory


def test_read_proteus_merges_families_by_time(tmp_path: Path) -> None:
    directory = write_proteus(
        tmp_path / "trace",
        {
            "yolo": "# a comment\n5,1,300\n\n1500,1,300\n",
            "bert": "10,1,200\n1500,2,250\n4000,1,200",
        },
    )
    (directory / "notes.md").write_text("not a trace")
    trace = read_proteus(directory)
    assert trace.families == ("bert", "yolo")
    assert trace.arrival_s.tolist() == [0.005, 0.01, 1.5, 1.5, 4.0]
    assert trace.family.tolist() == [1, 0, 0, 1, 0]
    assert trace.slo_s.tolist() == [0.3, 0.2, 0.25, 0.3, 0.2]
    assert read_proteus(directory, ["yolo"]).family.tolist() == [0, 0]
    assert read_proteus(directory, ["yolo", "bert"]).families == ("yolo", "bert")


def test_an_empty_proteus_file_is_a_family_without_requests(tmp_path: Path) -> None:
    directory = write_proteus(tmp_path, {"a": "# nothing yet\n", "b": "7,1,100\n"})
    trace = read_proteus(directory)
    assert trace.families == ("a", "b")
    assert trace.family.tolist() == [1]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1,1,300\n2,1\n", r"b\.txt:2: 2 fields in '2,1'"),
        ("1,1,300\n# c\n2.5,1,300\n", r"b\.txt:3: a field that is not an integer in '2.5,1,300'"),
        ("1,1,300\n-2,1,300\n", r"b\.txt:2: a negative arrival time"),
        ("1,1,0\n", r"b\.txt:1: a latency SLO <= 0"),
        ("1,1,300,7\n", r"b\.txt:1: 4 fields"),
    ],
)
def test_a_bad_proteus_line_is_named_by_file_and_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    directory = write_proteus(tmp_path, {"a": "1,1,300\n", "b": text})
    with pytest.raises(ValueError, match=problem) as caught:
        read_proteus(directory)
    assert "expected 'arrival_time_ms,qos_level,latency_slo_ms'" in str(caught.value)


def test_proteus_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_proteus(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"no <family>\.txt files"):
        read_proteus(tmp_path)
    write_proteus(tmp_path, {"a": "1,1,300\n"})
    with pytest.raises(ValueError, match=r"families \['zz'\] .* available: a"):
        read_proteus(tmp_path, ["zz"])


@pytest.mark.skipif(
    not PROTEUS_DIR.is_dir(), reason="Proteus data (../shared/data/proteus) not present"
)
def test_the_published_proteus_trace() -> None:
    trace = read_proteus(PROTEUS_DIR)
    assert len(trace) == 75_253
    assert trace.families == (
        "bert", "densenet", "efficientnet", "gpt2", "mobilenet", "resnest", "resnet", "t5", "yolo",
    )  # fmt: skip
    assert (trace.slo_s == 0.3).all()
    assert trace.duration_s == 291.0  # the "300" folder's last request comes at 290.621 s
    assert int(trace.counts().sum()) == 75_253
    assert trace.family.tolist().count(trace.families.index("mobilenet")) == 26_753


# ---------------------------------------------------------------------------- per-second counts


def test_read_counts_reproduces_the_per_second_counts(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("second,family,count\n0,b,3\n0,a,1\n2,a,4\n\n1,b,0\n2,b,2\n")
    trace = read_counts(path, seed=3, slo_s=0.25)
    assert trace.families == ("a", "b")
    assert trace.counts().tolist() == [[1, 3], [0, 0], [4, 2]]
    assert (trace.slo_s == 0.25).all()
    assert same(trace, read_counts(path, seed=3, slo_s=0.25))
    assert not np.array_equal(trace.arrival_s, read_counts(path, seed=4).arrival_s)


def test_read_counts_with_one_implicit_family(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("second,count\n0,2\n3,1\n")
    assert read_counts(path).families == ("default",)
    trace = read_counts(path, family="digits")
    assert trace.families == ("digits",)
    assert trace.counts().tolist() == [[2], [0], [0], [1]]
    assert np.isnan(trace.slo_s).all()
    path.write_text("second,count\n")
    assert read_counts(path, family="digits").families == ("digits",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "time,count\n0,1\n",
            r":1: header 'time,count' must be 'second,family,count' or 'second,count'",
        ),
        ("", r":1: header '' must be"),
        ("second,count\n0,1\n1,x\n", r":3: count='x' must be a whole number >= 0"),
        ("second,count\n-1,1\n", r":2: second='-1' must be"),
        ("second,count\n0.5,1\n", r":2: second='0.5' must be"),
        (
            "second,family,count\n0,a\n",
            r":2: 2 fields in '0,a'; expected 3 \(second,family,count\)",
        ),
        ("second,family,count\n0,,1\n", r":2: empty family name"),
    ],
)
def test_a_bad_counts_row_is_named_by_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        read_counts(path)


# ---------------------------------------------------------------------------- generators


def test_poisson_rate_and_determinism() -> None:
    trace = poisson("a", rate_rps=100, duration_s=1000, seed=1, slo_s=0.1)
    assert trace.mean_rates_rps()["a"] == pytest.approx(100, rel=0.02)
    assert trace.arrival_s[-1] < 1000
    assert (trace.slo_s == 0.1).all()
    assert same(trace, poisson("a", 100, 1000, seed=1, slo_s=0.1))
    assert not same(trace, poisson("a", 100, 1000, seed=2, slo_s=0.1))
    gaps = np.diff(trace.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)
    assert len(poisson("a", 0, 10, seed=1)) == 0


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_bursts_have_the_requested_rate_and_cv(cv: float) -> None:
    trace = gamma_bursts("a", rate_rps=50, duration_s=2000, cv=cv, seed=7)
    gaps = np.diff(trace.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)
    assert len(trace) / 2000 == pytest.approx(50, rel=0.05)
    assert trace.arrival_s[-1] < 2000
    assert same(trace, gamma_bursts("a", 50, 2000, cv, seed=7))
    assert len(gamma_bursts("a", 0, 10, cv, seed=7)) == 0


def test_diurnal_follows_the_sine() -> None:
    trace = diurnal("a", mean_rps=100, amplitude=0.8, period_s=100, duration_s=2000, seed=5)
    assert len(trace) / 2000 == pytest.approx(100, rel=0.02)
    halves = trace.counts(50.0).sum(axis=1)  # alternating rising and falling half-periods
    high, low = halves[0::2].mean() / 50, halves[1::2].mean() / 50
    assert high == pytest.approx(100 * (1 + 2 * 0.8 / math.pi), rel=0.03)
    assert low == pytest.approx(100 * (1 - 2 * 0.8 / math.pi), rel=0.05)
    assert same(trace, diurnal("a", 100, 0.8, 100, 2000, seed=5))
    with pytest.raises(ValueError, match=r"amplitude=1.5 must lie in \[0, 1\]"):
        diurnal("a", 100, 1.5, 100, 10, seed=5)


def test_step_rates_per_segment() -> None:
    trace = step("a", [(0, 20), (100, 200), (150, 0)], duration_s=300, seed=2)
    segment = np.searchsorted([100, 150], trace.arrival_s, side="right")
    assert np.bincount(segment, minlength=3).tolist()[2] == 0
    assert (segment == 0).sum() / 100 == pytest.approx(20, rel=0.1)
    assert (segment == 1).sum() / 50 == pytest.approx(200, rel=0.05)
    assert trace.duration_s <= 150  # trailing silence is not part of a trace
    assert same(trace, step("a", [(0, 20), (100, 200), (150, 0)], 300, seed=2))


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ([], "must start with a segment at 0 s"),
        ([(1, 5)], "must start with a segment at 0 s"),
        ([(0, 5), (20, 1), (10, 2)], r"starts \[0, 20, 10\] must increase strictly"),
        ([(0, 5), (30, 1)], "start 30 s is not before duration_s=30"),
        ([(0, -5)], "rate_rps=-5 must be a finite number >= 0"),
    ],
)
def test_bad_step_segments(segments: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        step("a", segments, duration_s=30, seed=0)


def test_from_schedule_sorts_explicit_times() -> None:
    trace = from_schedule("a", [0.3, 0.1, 0.2], slo_s=0.05)
    assert trace.arrival_s.tolist() == [0.1, 0.2, 0.3]
    assert trace.slo_s.tolist() == [0.05] * 3
    with pytest.raises(ValueError, match="must be >= 0"):
        from_schedule("a", [-0.1])


# ---------------------------------------------------------------------------- registry


def test_build_trace_matches_the_generators(tmp_path: Path) -> None:
    built = build_trace(
        {"kind": "poisson", "family": "digits", "rate_rps": 50, "duration_s": 30, "seed": 1},
        tmp_path,
    )
    assert same(built, poisson("digits", 50, 30, seed=1))
    assert same(
        build_trace(
            {"kind": "gamma", "family": "a", "rate_rps": 5, "duration_s": 9, "cv": 2}, tmp_path
        ),
        gamma_bursts("a", 5, 9, 2.0, seed=0),
    )
    spec = {"kind": "diurnal", "family": "a", "mean_rps": 5, "amplitude": 0.5, "period_s": 4}
    assert same(
        build_trace({**spec, "duration_s": 8, "slo_s": 0.2}, tmp_path),
        diurnal("a", 5, 0.5, 4, 8, 0, 0.2),
    )
    assert same(
        build_trace(
            {"kind": "step", "family": "a", "rates_rps": [[0, 5], [3, 9]], "duration_s": 6},
            tmp_path,
        ),
        step("a", [(0, 5), (3, 9)], 6, seed=0),
    )


def test_build_trace_resolves_paths_against_the_base_dir(tmp_path: Path) -> None:
    write_proteus(tmp_path / "traces", {"a": "1,1,300\n", "b": "2,1,300\n"})
    (tmp_path / "log.csv").write_text("second,count\n0,3\n")
    base_dir = tmp_path / "scenarios"
    base_dir.mkdir()
    proteus = build_trace({"kind": "proteus", "path": "../traces", "families": ["b"]}, base_dir)
    assert proteus.families == ("b",) and proteus.slo_s.tolist() == [0.3]
    assert build_trace(
        {"kind": "proteus", "path": "../traces", "slo_s": 1}, base_dir
    ).slo_s.tolist() == [1.0, 1.0]
    counts = build_trace(
        {"kind": "counts", "path": str(tmp_path / "log.csv"), "family": "x"}, base_dir
    )
    assert same(counts, read_counts(tmp_path / "log.csv", family="x"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"kind": "zipf"},
            "unknown trace kind 'zipf'; choose one of: proteus, counts, poisson, gamma",
        ),
        ({"family": "a"}, "a trace must be a mapping with a 'kind' key"),
        (
            {"kind": "poisson", "family": "a", "rate_rps": 5},
            r"poisson trace is missing duration_s \(required: family, rate_rps, duration_s; optional: seed, slo_s\)",
        ),
        (
            {"kind": "poisson", "family": "a", "rate_rps": 5, "duration_s": 1, "rate": 3},
            r"unexpected keys \['rate'\] \(required: family",
        ),
        (
            {"kind": "poisson", "family": "a", "rate_rps": "5", "duration_s": 1},
            "poisson trace: rate_rps='5' must be a number",
        ),
        (
            {"kind": "poisson", "family": "a", "rate_rps": 5, "duration_s": 1, "seed": 1.5},
            "seed=1.5 must be an integer",
        ),
        (
            {"kind": "poisson", "family": "a", "rate_rps": True, "duration_s": 1},
            "rate_rps=True must be a number",
        ),
        (
            {"kind": "poisson", "family": "a", "rate_rps": -5, "duration_s": 1},
            "poisson trace: rate_rps=-5.0 must be",
        ),
        (
            {"kind": "step", "family": "a", "rates_rps": [5], "duration_s": 1},
            r"list of \[start_s, rate_rps\] pairs",
        ),
        (
            {"kind": "proteus", "path": "nowhere"},
            "proteus trace: Proteus trace directory .*nowhere does not exist",
        ),
    ],
)
def test_build_trace_errors_name_the_problem(
    tmp_path: Path, spec: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_trace(spec, tmp_path)


def test_build_traces_merges_and_needs_one(tmp_path: Path) -> None:
    specs = [
        {"kind": TraceKind.POISSON, "family": "a", "rate_rps": 5, "duration_s": 10, "seed": 1},
        {"kind": "poisson", "family": "b", "rate_rps": 5, "duration_s": 10, "seed": 2},
    ]
    assert same(
        build_traces(specs, tmp_path), merge(poisson("a", 5, 10, 1), poisson("b", 5, 10, 2))
    )
    with pytest.raises(ValueError, match="no traces given"):
        build_traces([], tmp_path)
