"""Per-application policies: loading, defaults under request overrides, who degrades first."""

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, build_toy_repository
from rheostat.apps import AppPolicy, load_apps, queue_fill_limit
from rheostat.errors import ConfigError

APPS = """
apps:
  strict: {slo_ms: 0.001}
  careful: {min_accuracy: 0.85, priority: 1}
  archive: {priority: 200}
  images-only: {family: efficientnet_lite}
  bulk: {max_share: 0.3}
"""


def test_load_apps_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "apps.yaml"
    path.write_text(APPS)
    apps = load_apps(path)
    assert apps["careful"] == AppPolicy("careful", min_accuracy=0.85, priority=1)
    path.write_text("apps:\n  a: {slo: 5}\n")
    with pytest.raises(ConfigError, match=r"apps\.yaml: apps\.a\.slo: unknown field"):
        load_apps(path)
    path.write_text("apps:\n  a: {max_share: 2}\n")
    with pytest.raises(ConfigError, match=r"apps\.a: app 'a': max_share 2 not in \(0, 1\]"):
        load_apps(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="expected a mapping with an 'apps' mapping"):
        load_apps(path)


def test_lower_priorities_leave_more_of_the_queue() -> None:
    assert [queue_fill_limit(p) for p in (1, 50, 0, 100, 101, 200)] == [1, 1, 0.75, 0.75, 0.5, 0.5]


def body(**parameters: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
        "parameters": parameters,
    }


@pytest.mark.integration
def test_app_policies_through_the_api(tmp_path: Path, serve: Callable[..., Server]) -> None:
    repo = build_toy_repository(tmp_path, policy="max_delay", queue=8, delay_us=300_000)
    (repo / "apps.yaml").write_text(APPS)
    server = serve(repo)
    url = f"{server.url}/v2/models/toy/infer"

    def post(**parameters: Any) -> httpx.Response:
        return httpx.post(url, json=body(**parameters), timeout=30)

    strict = post(app="strict")
    assert strict.status_code == 504 and "cannot be met" in strict.json()["error"]
    assert post(app="strict", slo_ms=2000).status_code == 200  # the request overrides
    unknown = post(app="nobody")
    assert (
        unknown.status_code == 400 and "known apps: ['archive', 'bulk'" in unknown.json()["error"]
    )
    wrong = post(app="images-only")
    assert (
        wrong.status_code == 400 and "only use family 'efficientnet_lite'" in wrong.json()["error"]
    )
    # 6 requests at once, held 300 ms in the slow variant's queue of 8: the archive app
    # (priority 200) may fill half of it and then degrades to the cheaper variant
    with ThreadPoolExecutor(6) as pool:
        low = list(pool.map(lambda _: post(app="archive"), range(6)))
    variants = sorted(r.json()["parameters"]["variant"] for r in low)
    assert variants == ["toy.fast"] * 2 + ["toy.slow"] * 4
    with ThreadPoolExecutor(6) as pool:
        high = list(pool.map(lambda _: post(app="careful"), range(6)))
    assert all(r.json()["parameters"]["variant"] == "toy.slow" for r in high)


@pytest.mark.integration
def test_share_cap_sheds_an_app_only_under_pressure(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    import time

    # the queue holds its requests up to 1.9 s (within the 2-s SLO), so 5 of 8 stay queued
    # while a loaded machine gets them all through HTTP
    repo = build_toy_repository(tmp_path, policy="max_delay", queue=8, delay_us=1_900_000)
    (repo / "apps.yaml").write_text(APPS)
    server = serve(repo)

    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(5) as pool:

        def post(**parameters: Any) -> httpx.Response:
            return client.post("/v2/models/toy/infer", json=body(**parameters))

        assert post(app="bulk").status_code == 200  # no pressure: served, though 100% of load
        # The share is judged on closed 1-s demand bins, counted on the monotonic clock that
        # the server shares with this process: start a fresh bin, so that the careful requests
        # and the next bulk one fall in one bin while the closed ones hold bulk's 100 %.
        time.sleep(math.ceil(time.monotonic()) - time.monotonic() + 0.02)
        held = [pool.submit(post, app="careful") for _ in range(5)]  # 5 of 8 queued
        assert wait_until_queued(server, 5), "the 5 requests never were all queued"
        shed = post(app="bulk")
        assert all(f.result().status_code == 200 for f in held)
    assert shed.status_code == 429, shed.text
    assert "over its max_share of 30%" in shed.json()["error"]


def wait_until_queued(server: Server, count: int, timeout_s: float = 1.6) -> bool:
    """Poll the server's queue-depth gauge until `count` items wait (a loaded machine may
    take a while to get every concurrent request through HTTP)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.metrics_url is not None
        lines = httpx.get(server.metrics_url).text.splitlines()
        depth = sum(float(x.split()[-1]) for x in lines if x.startswith("rheostat_queue_depth{"))
        if depth >= count:
            return True
        time.sleep(0.02)
    return False
