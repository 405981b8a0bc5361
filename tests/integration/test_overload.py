"""Three times more load than the device can carry, for 60 s: the worst day, end to end.

One core serves EfficientNet-Lite2 (pinned, so there is no cheaper variant to fall back to)
while an open-loop client sends three times its measured capacity. The server must answer
every request it accepts within the SLO (p99), refuse the rest at once with 429 and a
Retry-After, report it all in its metrics, and keep its memory bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from conftest import Server, drive, family_repository, need_cores, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VARIANT = "efficientnet_lite.lite2"
SLO_S = 0.5  # the family's slo_ms
SOAK_S = 60.0
OVERLOAD = 3.0


@pytest.fixture(scope="module")
def server(default_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_cores(2, "one for the device, one for the front end and client")
    repo = family_repository(
        default_repository, tmp_path_factory.mktemp("repo"), "efficientnet_lite"
    )
    server = start_server(repo, "--device", "cpu:1")
    yield server
    stop_server(server)


def rss_mib(server: Server) -> float:
    root = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def capacity_rps(server: Server) -> float:
    """The device's throughput for the variant, from the profile the server measured."""
    profiles = httpx.get(f"{server.url}/rheostat/plan").json()["profiles"]
    points = next(v["p50_s"] for k, v in profiles.items() if k.startswith(VARIANT + "@"))
    return max(int(b) / s for b, s in points.items())


def test_three_times_overload_for_a_minute(server: Server) -> None:
    rate = OVERLOAD * capacity_rps(server)
    drive(server.url, VARIANT, 2.0, 3.0, 0.0, [])  # warm up the path and the allocator
    memory_before = rss_mib(server)
    log: list[tuple[float, int, str]] = []
    details: list[tuple[float, int, float, str | None, float | None]] = []
    drive(server.url, VARIANT, rate, SOAK_S, 0.0, log, details)
    memory_after = rss_mib(server)

    statuses = [d[1] for d in details]
    assert len(statuses) == int(rate * SOAK_S)  # every request got an answer
    assert set(statuses) <= {200, 429, 504}, sorted(set(statuses))
    accepted = [d[2] for d in details if d[1] == 200]
    inside = [d[4] for d in details if d[1] == 200 and d[4] is not None]  # server-side
    shed = [d[3] for d in details if d[1] == 429]
    served_rps = len(accepted) / SOAK_S
    p99 = float(np.percentile(inside, 99))
    print(
        f"offered {rate:.1f} rps ({OVERLOAD:.0f}x a capacity of {rate / OVERLOAD:.1f}); served "
        f"{served_rps:.1f} rps; 429: {len(shed)}; 504: {statuses.count(504)}; admitted p50 "
        f"{np.percentile(inside, 50) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms in the server, "
        f"{np.percentile(accepted, 99) * 1e3:.0f} ms at the client; RSS "
        f"{memory_before:.0f} -> {memory_after:.0f} MiB"
    )
    assert served_rps > 0.6 * rate / OVERLOAD  # the device stays busy serving
    assert p99 <= SLO_S, p99  # what is admitted is answered in time
    assert shed and all(r is not None and int(r) >= 1 for r in shed)  # 429 + Retry-After
    assert memory_after - memory_before < 150, (memory_before, memory_after)
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200

    assert server.metrics_url is not None
    metrics = httpx.get(server.metrics_url).text
    shed_line = next(
        line for line in metrics.splitlines()
        if line.startswith('rheostat_shed_requests_total{family="efficientnet_lite"}')
    )  # fmt: skip
    assert float(shed_line.split()[-1]) >= len(shed)
