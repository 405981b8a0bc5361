"""The README's Ray walk-through, run as written: `ray start` a head and a worker node with
Ray's own CLI, serve with `--ray-address`, answer a request on the worker node's device,
`ray stop`. Only the head's port is swapped for a free one, and the repository is the digits
family alone (the walk-through's default repository would only take longer to profile)."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from ray_fixtures import BODY

from conftest import ROOT, family_repository, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def walkthrough() -> list[str]:
    blocks = re.findall(r"```shell\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    ray = [b for b in blocks if "ray start --head" in b]
    assert len(ray) == 1, blocks
    return [line for line in ray[0].replace("\\\n", " ").splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_ray_walkthrough_serves_on_the_worker_node(
    default_repository: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray", reason="distributed mode needs Ray (pip install 'rheostat[ray]')")
    port = str(free_port())
    lines = [line.replace("6379", port) for line in walkthrough()]
    starts = [line for line in lines if line.startswith("ray start")]
    serve = next(line for line in lines if "rheostat serve" in line)
    assert len(starts) == 2 and lines[-1] == "ray stop", lines
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    output = tmp_path / "ray.log"
    try:
        for line in starts:
            # to a file, not a pipe: the daemons `ray start` leaves behind keep its stdout open
            with output.open("a") as out:
                done = subprocess.run(
                    [ray, *shlex.split(line)[1:]], stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, timeout=60, env=env,
                )  # fmt: skip
            assert done.returncode == 0, output.read_text()[-3000:]
        args = shlex.split(serve)[2:]  # after `.venv/bin/rheostat serve`
        repo = family_repository(default_repository, tmp_path / "repo", "digits")
        server = start_server(repo, *args)
        try:
            r = httpx.post(f"{server.url}/v2/models/digits/infer", json=BODY, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["parameters"]["device"].startswith("edge-a."), r.json()
        finally:
            stop_server(server)
    finally:
        with output.open("a") as out:
            subprocess.run(
                [ray, "stop"], stdout=out, stderr=subprocess.STDOUT, timeout=120, env=env
            )
