"""`rheostat profile` end to end: real worker, files in the repository, used by the server."""

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT, Server

pytestmark = pytest.mark.integration


def test_profile_writes_percentiles_that_the_server_then_uses(
    toy_repository: Path, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(toy_repository, repo)
    done = subprocess.run(
        [sys.executable, "-m", "rheostat", "profile", "--model-repository", str(repo),
         "--device", "cpu:0", "--repeats", "5", "--warmup", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "toy.slow" in done.stdout and "p99" in done.stdout
    for variant in ("fast", "slow"):
        data = json.loads((repo / "toy" / variant / "1" / "profile.json").read_text())
        entry = data["cpu1"]
        assert set(entry["batch"]) == {"1", "2", "4", "8"}
        for d in entry["batch"].values():
            assert 0 < d["p50_s"] <= d["p95_s"] <= d["p99_s"]
            assert d["throughput_rps"] > 0
        assert entry["memory_mb"] >= 0 and entry["threads"] == 1
    slow = json.loads((repo / "toy" / "slow" / "1" / "profile.json").read_text())["cpu1"]
    fast = json.loads((repo / "toy" / "fast" / "1" / "profile.json").read_text())["cpu1"]
    assert slow["batch"]["1"]["p50_s"] > fast["batch"]["1"]["p50_s"]
    server = serve(repo, "--device", "cpu:0")
    log = "".join(server.log)
    assert "toy.slow: stored cpu1 profile" in log and "toy.fast: stored cpu1 profile" in log


def test_profile_rejects_a_bad_repository(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rheostat", "profile", "--model-repository", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert "holds no model family" in done.stderr
