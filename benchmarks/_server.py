"""Start and stop a real `rheostat serve` process for benchmarks."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[str]
    log: list[str]

    def processes(self) -> list[psutil.Process]:
        main = psutil.Process(self.process.pid)
        return [main, *main.children(recursive=True)]

    def memory_mib(self) -> tuple[float, float]:
        """(sum of RSS, sum of PSS) over the server and all its children, in MiB."""
        rss = pss = 0
        for proc in self.processes():
            info = proc.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        return rss / 2**20, pss / 2**20


def start(repo: Path, *args: str, timeout_s: float = 300) -> RunningServer:
    command = [sys.executable, "-m", "rheostat", "serve", "--model-repository", str(repo),
               "--http-port", "0", *args]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log: list[str] = []
    seen = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if "listening on" in line:
                seen.set()
        seen.set()

    threading.Thread(target=drain, daemon=True).start()
    seen.wait(60)
    match = next((m for x in log if (m := re.search(r"http://[\d.]+:(\d+)", x))), None)
    if match is None:
        raise RuntimeError("server did not start:\n" + "".join(log))
    url = f"http://127.0.0.1:{match.group(1)}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return RunningServer(url, process, log)
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError("server exited:\n" + "".join(log))
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


def stop(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
