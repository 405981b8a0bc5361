"""`rheostat serve --ray-address` misused: one clear line, exit status 2, at once."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import ROOT


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rheostat", "serve", "--http-port", "0", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ray-address", "auto", "--device", "cpu:0"), "--device and --ray-address: give one"),
        (("--ray-address", "127.0.0.1:{port}"), "nothing answers at 127.0.0.1:"),
    ],
)
def test_bad_ray_options_are_named(args: tuple[str, ...], message: str) -> None:
    done = serve(*(a.format(port=closed_port()) for a in args))
    assert done.returncode == 2, done.stderr
    assert message in done.stdout + done.stderr and "Traceback" not in done.stderr, done
