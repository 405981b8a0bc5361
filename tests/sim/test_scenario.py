"""Scenario files and `rheostat simulate`, driven the way a user runs them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from rheostat.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "edge_cluster.yaml"

SMALL = """
cluster:
  devices: [{type: gpu, count: 2}]
  families:
    - name: vision
      slo_ms: 100
      variants:
        - {name: big, accuracy: 0.8, latency_ms: {gpu: {1: 6, 8: 20}}}
        - {name: small, accuracy: 0.7, latency_ms: {gpu: {1: 1.5, 8: 5}}}
trace:
  - {kind: step, family: vision, rates_rps: [[0, 300], [5, 1200]], duration_s: 10, seed: 1}
policies: [proteus, rheostat]
settings: {load_time_s: 0.5, solve_time_s: 0.01}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_the_example_scenario_loads() -> None:
    scenario = load_scenario(EXAMPLE)
    assert scenario.trace.families == ("vision", "speech")
    assert len(scenario.model.devices) == 6 and len(scenario.policies) == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cluster: {}\n", "sections .* expected"),
        ("cluster: {}\ntrace: []\nextra: 1\n", "unknown: \\['extra'\\]"),
        (SMALL.replace("kind: step", "kind: stairs"), "unknown trace kind 'stairs'"),
        (SMALL.replace("[proteus, rheostat]", "[proteus, fastest]"), "unknown policy 'fastest'"),
        (SMALL.replace("family: vision", "family: audio"), "families \\['audio'\\] the cluster"),
        (SMALL.replace("      slo_ms: 100\n", ""), "missing key 'slo_ms'"),
        (SMALL.replace("load_time_s", "loading_s"), "unexpected keyword argument 'loading_s'"),
        (SMALL.replace("count: 2", "count: 0"), "count 0 of gpu must be >= 1"),
        ("cluster: [1, 2\n", "cannot read it as YAML"),
    ],
)
def test_bad_scenarios_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_scenario(write(tmp_path, text))


def test_simulate_command_prints_the_table_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "rheostat", "simulate", str(write(tmp_path, SMALL)),
         "--output", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "proteus", "rheostat", "oracle bound",
    ]  # fmt: skip
    assert "proteus: simulated in" in done.stderr
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert {"proteus", "rheostat", "rheostat/vision"} <= {r["policy"] for r in rows}
    with (out / "timeline_rheostat.csv").open() as file:
        timeline = list(csv.DictReader(file))
    assert len(timeline) == 10 and float(timeline[7]["demand_qps"]) > 900


def test_simulate_command_names_a_bad_scenario(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rheostat", "simulate", str(write(tmp_path, "cluster: {}\n"))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "sections" in done.stderr and "Traceback" not in done.stderr
