"""`rheostat perf`: the pure parts on fixed data, the driver on a fake clock and transport,
and the command end to end against a real server."""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ROOT, Server, start_server, stop_server
from rheostat.api.codec import decode_infer_request
from rheostat.cli import app
from rheostat.perf import (
    ClosedLoop,
    Distribution,
    InputSpec,
    LevelResult,
    Measurement,
    OpenLoop,
    Sample,
    Target,
    arrival_offsets_s,
    build_loads,
    concrete_shape,
    csv_row,
    is_stable,
    measure_level,
    notes,
    parse_range,
    percentile_of,
    summarize,
)
from rheostat.perf.request import parse_request_parameter, read_inputs

# ---------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("text", "integer", "levels"),
    [
        ("1:4:1", True, (1, 2, 3, 4)),
        ("1:4", True, (1, 2, 3, 4)),
        ("3", True, (3,)),
        ("1:9:4", True, (1, 5, 9)),
        ("1:8:4", True, (1, 5)),
        ("20:40:20", False, (20.0, 40.0)),
        ("0.5:1.5:0.5", False, (0.5, 1.0, 1.5)),
    ],
)
def test_parse_range(text: str, integer: bool, levels: tuple[float, ...]) -> None:
    assert parse_range(text, "--concurrency-range", integer=integer) == levels


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("4:1", "'4:1': END 1 is below START 4"),
        ("0:2", "'0:2': START 0 must be > 0"),
        ("1:4:0", "'1:4:0': STEP 0 must be > 0"),
        ("1.5", "'1.5' is not a range"),
        ("a:b", "'a:b' is not a range"),
        ("1:2:3:4", "'1:2:3:4' is not a range"),
        ("", "'' is not a range"),
        ("1:100000", "makes 100000 levels"),
    ],
)
def test_parse_range_names_the_bad_value_and_the_form(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match="--concurrency-range") as error:
        parse_range(text, "--concurrency-range", integer=True)
    assert problem in str(error.value)
    if "levels" not in problem:
        assert "expected START[:END[:STEP]]" in str(error.value)


def test_build_loads() -> None:
    assert build_loads(None, None) == [ClosedLoop(1)]
    assert build_loads("1:3:2", None) == [ClosedLoop(1), ClosedLoop(3)]
    poisson = Distribution.POISSON
    assert build_loads(None, "10:20:10", poisson) == [OpenLoop(10, poisson), OpenLoop(20, poisson)]
    with pytest.raises(ValueError, match="either --concurrency-range or --request-rate-range"):
        build_loads("1", "10")


def test_bad_flags_exit_2_with_one_line() -> None:
    runner = CliRunner()
    for args, message in (
        (["--concurrency-range", "4:1"], "--concurrency-range '4:1': END 1 is below START 4"),
        (["--request-rate-range", "x"], "--request-rate-range 'x' is not a range"),
        (["--request-distribution", "bursty"], "expected one of constant, poisson"),
        (["--percentile", "0"], "--percentile 0.0: expected a value in (0, 100]"),
    ):
        result = runner.invoke(app, ["perf", "-m", "digits", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output


# ---------------------------------------------------------------------------- inputs


def test_inputs_follow_the_metadata() -> None:
    digits = InputSpec("input", "FP32", (-1, 64))
    image = InputSpec("image", "UINT8", (-1, -1, -1, 3))
    assert concrete_shape(digits, 4, {}) == (4, 64)
    assert concrete_shape(image, 1, {}) == (1, 224, 224, 3)
    assert concrete_shape(image, 2, {"image": (32, 48, 3)}) == (2, 32, 48, 3)
    assert concrete_shape(InputSpec("x", "FP32", (3, 2)), 1, {}) == (3, 2)
    with pytest.raises(
        ValueError, match=r"variable dimensions \[-1, -1, 8\]; give them with --shape x:"
    ):
        concrete_shape(InputSpec("x", "FP32", (-1, -1, 8)), 1, {})
    with pytest.raises(
        ValueError, match="--batch-size 2: input 'x' of shape \\[3, 2\\] has no batch"
    ):
        concrete_shape(InputSpec("x", "FP32", (3, 2)), 2, {})
    with pytest.raises(ValueError, match="--shape image:5,5 does not fit"):
        concrete_shape(image, 1, {"image": (5, 5)})


def test_alternative_inputs_prefer_numeric_data() -> None:
    metadata = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]},
        ]
    }
    assert read_inputs(metadata) == [
        InputSpec("image", "UINT8", (-1, -1, -1, 3)),
        InputSpec("input", "FP32", (-1, 3, 224, 224)),
    ]
    assert [s.name for s in read_inputs(metadata, ["image"])] == ["image"]
    with pytest.raises(ValueError, match="--input 'pixels': the model's inputs are"):
        read_inputs(metadata, ["pixels"])


@pytest.mark.parametrize("binary", [True, False])
def test_target_encodes_valid_requests(binary: bool) -> None:
    metadata = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]}
    target = Target(
        "localhost:8000", "digits", binary, 3, parameters=("slo_ms:200:int", "app:a:b:string")
    )
    call = target.encode(metadata)
    assert call.path == "/v2/models/digits/infer"
    length = call.headers.get("Inference-Header-Content-Length")
    request = decode_infer_request(
        call.body,
        header_length=int(length) if length else None,
        max_body_bytes=2**20,
        max_elements=2**20,
    )
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input", "FP32", (3, 64))
    assert tensor.data.min() >= 0 and tensor.data.max() < 16
    assert request.binary_data_output is binary
    assert request.parameters == {"slo_ms": 200, "app": "a:b"}


def test_request_parameters_need_a_name_a_value_and_a_type() -> None:
    assert parse_request_parameter("x:0.5:float") == ("x", 0.5)
    assert parse_request_parameter("pin:true:bool") == ("pin", True)
    for bad in ("slo_ms:200", "slo_ms:fast:int", ":1:int", "x:yes:bool", "x"):
        with pytest.raises(
            ValueError, match=f"--request-parameter '{bad}': expected NAME:VALUE:TYPE"
        ):
            Target("u", "m", parameters=(bad,))


# ---------------------------------------------------------------------------- summaries


def ok(sent_s: float, latency_ms: float, variant: str = "m.big") -> Sample:
    params = {"variant": variant, "queue_ms": 1.0, "compute_ms": 3.0, "total_ms": 4.5}
    params["slo_met"] = latency_ms < 90
    return Sample(sent_s, sent_s + latency_ms / 1e3, 200, parameters=params)


def fixed_samples() -> list[Sample]:
    """100 successes of 1..100 ms in [10 s, 11 s), a quarter on the small variant, errors,
    and requests answered outside the window."""
    samples = [ok(10.0 + i / 200, i + 1, "m.small" if i % 4 == 0 else "m.big") for i in range(100)]
    samples += [
        Sample(10.1, 10.2, 429, retry_after=True, error="queue full"),
        Sample(10.1, 10.2, 429, retry_after=False, error="queue full"),
        Sample(10.3, 10.4, 504, error="deadline"),
        Sample(10.5, 10.6, 0, error="ReadTimeout: timed out"),
        ok(9.0, 5),  # answered before the window
        ok(10.99, 20),  # answered after it
    ]
    return samples


def test_summary_of_a_fixed_list() -> None:
    result = summarize(fixed_samples(), 10.0, 11.0, ClosedLoop(4), 2, (50, 90, 95, 99, 99.9))
    assert (result.mode, result.level, result.window_s, result.batch_size) == (
        "concurrency", 4, 1.0, 2,
    )  # fmt: skip
    assert result.num_ok == 100
    assert result.num_sent == 105
    assert result.throughput_rps == 100
    assert result.infer_per_s == 200
    assert result.latency_ms == pytest.approx({50: 50, 90: 90, 95: 95, 99: 99, 99.9: 100})
    assert result.mean_ms == pytest.approx(50.5)
    assert result.errors == {0: 1, 429: 2, 504: 1}
    assert result.error_examples == {
        0: "ReadTimeout: timed out",
        429: "queue full",
        504: "deadline",
    }
    assert result.retry_after_share == 0.5
    assert (result.queue_ms, result.compute_ms, result.total_ms) == (1.0, 3.0, 4.5)
    assert result.slo_met_share == 0.89
    assert result.variants == {"m.big": 0.75, "m.small": 0.25}


def test_summary_without_answers_or_server_parameters() -> None:
    plain = Sample(0.0, 0.5, 200)  # e.g. Triton: no parameters in the response
    result = summarize([plain], 0.0, 1.0, OpenLoop(2.0), 1)
    assert result.latency_ms == {50: 500, 90: 500, 95: 500, 99: 500}
    assert (result.queue_ms, result.slo_met_share, result.variants) == (None, None, {})
    empty = summarize([], 0.0, 1.0, OpenLoop(2.0), 1)
    assert (empty.num_ok, empty.mean_ms, empty.latency_ms, empty.throughput_rps) == (0, None, {}, 0)


def test_nearest_rank_percentiles() -> None:
    assert [percentile_of([10, 20, 30], p) for p in (1, 33, 34, 50, 67, 99, 100)] == [
        10, 10, 20, 20, 30, 30, 30,
    ]  # fmt: skip


def window(throughput: float, p99_ms: float) -> LevelResult:
    samples = [ok(i / throughput, p99_ms) for i in range(int(throughput))]
    return summarize(samples, 0.0, 1.0 + p99_ms / 1e3, ClosedLoop(1), 1)


def test_stability_needs_three_windows_within_tolerance() -> None:
    steady = [window(100, 10), window(104, 10), window(98, 10.5)]
    assert not is_stable(steady[:2], 10, 99)
    assert is_stable(steady, 10, 99)
    assert not is_stable(steady, 1, 99)
    assert not is_stable([*steady, window(150, 10)], 10, 99)
    assert not is_stable([*steady, window(100, 20)], 10, 99)


def test_csv_row_and_notes() -> None:
    result = summarize(fixed_samples(), 10.0, 11.0, OpenLoop(150.0), 1)
    row = csv_row(result, (50, 99))
    assert row == {
        "mode": "request_rate", "level": "150", "batch_size": "1", "window_s": "1.000",
        "num_sent": "105", "num_ok": "100", "throughput_rps": "100.000",
        "throughput_infer_per_s": "100.000", "latency_avg_ms": "50.500",
        "latency_p50_ms": "50.000", "latency_p99_ms": "99.000", "num_429": "2",
        "retry_after_share": "0.5000", "num_other_errors": "2", "errors": "0:1;429:2;504:1",
        "server_queue_ms": "1.000", "server_compute_ms": "3.000", "server_total_ms": "4.500",
        "slo_met_share": "0.8900",
        "variants": "m.big:0.7500;m.small:0.2500", "stable": "",
    }  # fmt: skip
    assert notes([result]) == [
        "150/s: the client sent only 105.0 req/s; it cannot keep up (CPU bound, or "
        "--max-connections too small), so this level is not the rate asked",
        "150/s: no answer: ReadTimeout: timed out",
        "150/s: 429: queue full",
        "150/s: 504: deadline",
    ]
    on_time = summarize(fixed_samples(), 10.0, 11.0, OpenLoop(110.0), 1)  # 105 sent: Poisson noise
    assert not any("client sent only" in line for line in notes([on_time]))


def test_arrival_offsets() -> None:
    rng = np.random.default_rng(0)
    constant = list(itertools.islice(arrival_offsets_s(4.0, Distribution.CONSTANT, rng), 5))
    assert constant == [0.0, 0.25, 0.5, 0.75, 1.0]
    poisson = list(itertools.islice(arrival_offsets_s(100.0, Distribution.POISSON, rng), 20001))
    gaps = np.diff(poisson)
    assert poisson[0] == 0.0 and (gaps > 0).all()
    assert gaps.mean() == pytest.approx(0.01, rel=0.05)
    assert gaps.std() == pytest.approx(0.01, rel=0.05)  # exponential: std == mean


# ---------------------------------------------------------------------------- driver


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time: when every task waits, time jumps to the next timer
    instead of blocking, so `asyncio.sleep` and timeouts cost no real time."""

    def __init__(self) -> None:
        self.now_s = 0.0
        loop = self

        class Selector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
            def select(self, timeout: float | None = None) -> list:  # type: ignore[override]
                loop.now_s += timeout or 0.0
                return super().select(0)

        super().__init__(Selector())

    def time(self) -> float:
        return self.now_s


class LoopClock:
    """The driver's clock on the running (virtual-time) loop."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)


def fake_server(service_s: float) -> httpx.MockTransport:
    """Answers after `service_s`; every third request is refused with 429 and Retry-After."""
    count = itertools.count()

    async def handle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(service_s)
        if next(count) % 3 == 2:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"error": "full"})
        params = {"variant": "m.a", "queue_ms": 0.5, "compute_ms": 2.0, "slo_met": True}
        return httpx.Response(200, json={"model_name": "m", "outputs": [], "parameters": params})

    return httpx.MockTransport(handle)


def drive(load: ClosedLoop | OpenLoop, service_s: float) -> tuple[LevelResult, list[tuple]]:
    """One level (0.2 s warm-up, 1 s window) against `fake_server` on virtual time."""
    metadata = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]}
    call = Target("fake", "m").encode(metadata)
    ticks: list[tuple] = []

    async def run() -> LevelResult:
        transport = fake_server(service_s)
        async with httpx.AsyncClient(base_url="http://fake", transport=transport) as client:
            m = Measurement(interval_s=1.0, warmup_s=0.2)
            return await measure_level(
                load, client, call, LoopClock(), m, 1, lambda *a: ticks.append(a)
            )

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(run()), ticks


def test_closed_loop_on_virtual_time() -> None:
    result, ticks = drive(ClosedLoop(2), 0.010)  # 2 workers x 100 answers/s
    assert (result.mode, result.level) == ("concurrency", 2)
    assert result.window_s == pytest.approx(1.0)
    assert result.num_ok + result.errors[429] == pytest.approx(200, abs=2)
    assert result.errors[429] == pytest.approx(result.num_ok / 2, abs=2)
    assert result.latency_ms == pytest.approx({50: 10, 90: 10, 95: 10, 99: 10})
    assert result.retry_after_share == 1.0
    assert (result.variants, result.queue_ms, result.compute_ms) == ({"m.a": 1.0}, 0.5, 2.0)
    assert ticks[-1][0] == ClosedLoop(2) and ticks[-1][1:] == pytest.approx((1.2, 1.2))


def test_open_loop_on_virtual_time_sends_at_its_rate() -> None:
    result, _ = drive(OpenLoop(50.0), 0.1)  # answers take longer than the gaps: 5 in flight
    assert result.mode == "request_rate"
    assert result.num_sent == pytest.approx(50, abs=1)
    assert result.num_ok + result.errors[429] == pytest.approx(50, abs=1)
    assert result.latency_ms[99] == pytest.approx(100)


# ---------------------------------------------------------------------------- end to end

PERF = [sys.executable, "-m", "rheostat", "perf"]


@pytest.fixture(scope="module")
def server(default_repository: Path) -> Iterator[Server]:
    server = start_server(default_repository)
    yield server
    stop_server(server)


def perf(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [*PERF, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as rows:
        return list(csv.DictReader(rows))


@pytest.mark.integration
def test_concurrency_sweep_against_a_real_server(server: Server, tmp_path: Path) -> None:
    out = perf("-m", "digits", "-u", server.url, "--concurrency-range", "1:2:1",
               "--measurement-interval-s", "1", "--warmup-s", "0.2",
               "--csv", str(tmp_path / "perf.csv"), "--plot", str(tmp_path / "perf.png"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "concurrency sweep" in out.stdout and "infer/s" in out.stdout and "p99 ms" in out.stdout
    rows = read_rows(tmp_path / "perf.csv")
    assert [(r["mode"], r["level"]) for r in rows] == [("concurrency", "1"), ("concurrency", "2")]
    for row in rows:
        assert float(row["throughput_infer_per_s"]) > 0
        assert float(row["latency_p99_ms"]) >= float(row["latency_p50_ms"]) > 0
        assert row["variants"].startswith("digits.")
        assert float(row["server_compute_ms"]) > 0
    assert (tmp_path / "perf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_request_rate_sweep_in_json(server: Server, tmp_path: Path) -> None:
    out = perf("-m", "digits", "-u", server.url, "--request-rate-range", "20:40:20", "--json",
               "--measurement-interval-s", "1", "--warmup-s", "0.2",
               "--csv", str(tmp_path / "rate.csv"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "request rate sweep" in out.stdout
    rows = read_rows(tmp_path / "rate.csv")
    assert [r["level"] for r in rows] == ["20", "40"]
    for row in rows:  # an open loop well under capacity is answered at the rate it sends
        assert float(row["throughput_rps"]) == pytest.approx(float(row["level"]), rel=0.5)
        assert row["errors"] == ""


@pytest.mark.integration
def test_unknown_model_and_unreachable_server_exit_2(server: Server) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["perf", "-m", "nope", "-u", server.url])
    assert unknown.exit_code == 2
    assert "model 'nope': the server answered 404: unknown model 'nope'" in unknown.output
    gone = runner.invoke(app, ["perf", "-m", "digits", "-u", "http://127.0.0.1:9"])
    assert gone.exit_code == 2
    assert "cannot reach the server at http://127.0.0.1:9" in gone.output
