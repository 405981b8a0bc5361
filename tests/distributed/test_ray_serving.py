"""`rheostat serve --ray-address` on a real two-node Ray cluster (two node types).

The server joins the cluster as a driver from its CPU-less head node, finds one device per
worker node (typed by the node's `device_type:` resource), starts each device's worker as an
actor on that node, and serves over HTTP as in local mode. Requests are answered by the
devices the plan names, and the actors run where their devices are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray_fixtures import BODY, RayCluster, ray_cluster

from conftest import Server, family_repository, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with ray_cluster(["edge-a", "edge-b"]) as running:
        yield running


@pytest.fixture(scope="module")
def server(
    cluster: RayCluster, default_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    repo = family_repository(default_repository, tmp_path_factory.mktemp("repo"), "digits")
    server = start_server(repo, "--ray-address", cluster.address, "--planner", "milp")
    yield server
    stop_server(server)


def test_each_node_is_a_device_and_its_worker_runs_there(
    cluster: RayCluster, server: Server
) -> None:
    devices = httpx.get(f"{server.url}/rheostat/plan").json()["devices"]
    expected = {
        (f"{label}.{cluster.node_id(i)[:6]}.cpu0", label, cluster.node_id(i))
        for i, label in enumerate(["edge-a", "edge-b"])
    }
    assert {(d["name"], d["type"], d["node_id"]) for d in devices} == expected
    assert all(d["worker_node_id"] == d["node_id"] and not d["lost"] for d in devices), devices
    assert any("Ray cluster at" in line and "edge-a" in line for line in server.log)


def test_requests_are_answered_by_the_devices_the_plan_names(server: Server) -> None:
    served: list[str] = []
    splits: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(120):
            if i % 20 == 0:
                plan = client.get("/rheostat/plan").json()
                splits |= set(plan["split"]["digits"])
            r = client.post("/v2/models/digits/infer", json=BODY)
            assert r.status_code == 200, r.text
            params = r.json()["parameters"]
            served.append(f"{params['variant']}@{params['device']}")
        splits |= set(client.get("/rheostat/plan").json()["split"]["digits"])
    assert set(served) <= splits, (set(served), splits)
    devices = {s.split("@")[1] for s in served}
    assert devices and all(d.startswith(("edge-a.", "edge-b.")) for d in devices), devices


def test_bad_input_is_answered_by_a_remote_worker_with_a_clear_error(server: Server) -> None:
    bad = {"inputs": [{"name": "input", "shape": [1, 63], "datatype": "FP32", "data": [1.0] * 63}]}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post("/v2/models/digits/infer", json=bad)
        assert r.status_code == 400 and "64" in r.json()["error"], r.text
        assert client.post("/v2/models/digits/infer", json=BODY).status_code == 200


def test_remote_devices_still_batch(server: Server) -> None:
    """Batches form in the front end and run as one actor call: a burst of concurrent
    requests runs in fewer executions than inferences."""
    from concurrent.futures import ThreadPoolExecutor

    def stats() -> dict[str, int]:
        counts = {"inference": 0, "execution": 0}
        body = httpx.get(f"{server.url}/v2/models/digits/stats").json()
        for model in body["model_stats"]:
            counts["inference"] += model["inference_count"]
            counts["execution"] += model["execution_count"]
        return counts

    before = stats()
    burst = {**BODY, "parameters": {"timeout": 10_000_000}}  # 10 s: a burst, not a deadline test
    limits = httpx.Limits(max_connections=32)
    with (
        httpx.Client(base_url=server.url, timeout=30, limits=limits) as client,
        ThreadPoolExecutor(32) as pool,
    ):
        codes = list(
            pool.map(
                lambda _: client.post("/v2/models/digits/infer", json=burst).status_code,
                range(256),
            )
        )
    after = stats()
    assert codes.count(200) == 256, sorted(set(codes))
    inferences = after["inference"] - before["inference"]
    executions = after["execution"] - before["execution"]
    assert inferences == 256 and executions < inferences, (inferences, executions)
