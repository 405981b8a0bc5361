"""The README's lifecycle walk-through (its `sh` block), run as written against a server on a
copy of the digits families: drifted data, retrain and swap, roll back, a live policy. Only
the port changes; `model_repository` is the copy (the commands run in its parent folder)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def walkthrough() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert len(blocks) == 1, blocks
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_the_readme_lifecycle_walkthrough(default_repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "model_repository"
    for family in ("digits", "digits_exits"):
        shutil.copytree(default_repository / family, repo / family)
    server = start_server(repo, "--device", "cpu:0")
    bin_dir = Path(sys.executable).parent
    try:
        port = server.url.rsplit(":", 1)[1]
        for line in walkthrough():
            command = line.replace("localhost:8000", f"localhost:{port}").replace(
                ".venv/bin/", f"{bin_dir}/"
            )
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, (line, done.stderr)
        versions = {
            e["name"]: e["version"] for e in httpx.post(f"{server.url}/v2/repository/index").json()
        }
        assert versions["digits.cnn_large"] == "1" and versions["digits.mlp_tiny"] == "2"
        apps = httpx.get(f"{server.url}/rheostat/apps").json()
        assert apps["sensor"]["max_energy_j"] == 0.001
        assert (tmp_path / "drifted.npz").is_file()
    finally:
        stop_server(server)
