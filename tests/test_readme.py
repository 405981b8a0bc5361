"""Every python and bash snippet in the README runs against a real server on the default
repository (`console` blocks are the make commands, which CI itself runs)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, Server, start_server, stop_server

pytestmark = pytest.mark.integration

BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.DOTALL)


@pytest.fixture(scope="module")
def server(default_repository: Path) -> Iterator[Server]:
    server = start_server(default_repository)
    yield server
    stop_server(server)


def snippets() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_readme_has_runnable_snippets() -> None:
    kinds = [kind for kind, _ in snippets()]
    assert "python" in kinds and "bash" in kinds


def _localize(code: str, server: Server) -> str:
    port = server.url.rsplit(":", 1)[1]
    return code.replace("localhost:8000", f"localhost:{port}")


def test_python_snippets_run_and_classify_the_cat(server: Server) -> None:
    code = "\n".join(_localize(c, server) for kind, c in snippets() if kind == "python")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "efficientnet_lite." in done.stdout
    first = done.stdout.split("'")[1]
    assert re.search(r":(281|282|285):", first), done.stdout  # tabby, tiger cat, Egyptian cat
    assert ":967:espresso'] True" in done.stdout  # the tritonclient snippet


def test_bash_snippets_run(server: Server) -> None:
    ran = set()
    for kind, code in snippets():
        if kind != "bash":
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _localize(code, server)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        if "rheostat simulate" in code:  # the simulator's table, the oracle as its last row
            ran.add("simulate")
            assert done.stdout.strip().splitlines()[-1].startswith("| oracle bound |")
            assert "| rheostat |" in done.stdout
            continue
        ran.add("curl")
        assert "200" in done.stdout
        assert '"variant":"digits.' in done.stdout
        assert '"slo_met":true' in done.stdout
    assert ran == {"simulate", "curl"}
