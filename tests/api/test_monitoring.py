"""What operators see, through the interfaces they use: a Prometheus scrape of
`--metrics-port`, the web page's `/rheostat/timeseries` and the OpenAPI description."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, family_repository, start_server, stop_server

pytestmark = pytest.mark.integration

DIGIT = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
         12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
         12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip


def body(**parameters: object) -> dict[str, object]:
    tensor = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": DIGIT}
    return {"inputs": [tensor], "parameters": parameters}


@pytest.fixture(scope="module")
def server(default_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = family_repository(default_repository, tmp_path_factory.mktemp("repo"), "digits")
    server = start_server(repo, "--device", "cpu:0")
    yield server
    stop_server(server)


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert server.metrics_url is not None, server.log
    text = httpx.get(server.metrics_url).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)  # type: ignore[no-any-return]


def test_a_scrape_counts_every_outcome(server: Server) -> None:
    url = f"{server.url}/v2/models/digits/infer"
    before = scrape(server)
    with httpx.Client() as client:
        for _ in range(20):
            assert client.post(url, json=body()).status_code == 200
        assert client.post(url, json=body(timeout=1)).status_code == 504  # 1 us: hopeless
        bad = {
            "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
        }
        assert client.post(url, json=bad).status_code == 400
    after = scrape(server)
    big = {"family": "digits", "variant": "cnn_large"}
    gained = {
        name: value(after, name, **big) - value(before, name, **big)
        for name in (
            "nv_inference_request_success_total", "nv_inference_count_total",
            "nv_inference_request_duration_seconds_count",
        )
    }  # fmt: skip
    assert gained == {
        "nv_inference_request_success_total": 20,
        "nv_inference_count_total": 20,
        "nv_inference_request_duration_seconds_count": 20,
    }
    assert value(after, "nv_inference_exec_count_total", **big) >= 1
    dropped = {"family": "digits", "kind": "dropped"}
    assert (
        value(after, "rheostat_slo_violations_total", **dropped)
        - value(before, "rheostat_slo_violations_total", **dropped)
        == 1
    )
    failed = {"family": "digits", "variant": "", "reason": "failed"}
    assert value(after, "nv_inference_request_failure_total", **failed) >= 1
    assert value(after, "rheostat_device_variant", device="cpu0", **big) == 1.0
    assert ("rheostat_queue_depth", (("device", "cpu0"), ("family", "digits"),
                                     ("variant", "mlp_tiny"))) in after  # fmt: skip
    assert value(after, "rheostat_served_accuracy", family="digits") == pytest.approx(0.990741)


def test_the_series_behind_the_page_follow_the_traffic(server: Server) -> None:
    with httpx.Client() as client:
        for _ in range(10):
            client.post(f"{server.url}/v2/models/digits/infer", json=body())
    data = httpx.get(f"{server.url}/rheostat/timeseries").json()
    digits = data["families"]["digits"]
    assert len(data["t"]) == len(digits["demand_rps"]) == len(digits["accuracy"])
    assert sum(digits["demand_rps"]) == data["totals"]["requests"] >= 10
    assert max(digits["capacity_rps"]) > 1000  # cnn_large on one core, from its profile
    assert data["plan"] == {"cpu0": "digits.cnn_large"}
    assert 0.99 < [a for a in digits["accuracy"] if a is not None][-1] < 0.991


def test_the_api_describes_itself_and_the_page_is_served(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/v2/models/{model}/infer" in spec["paths"]
    home = httpx.get(f"{server.url}/", follow_redirects=False)
    assert home.status_code in (302, 303, 307) and home.headers["location"] == "/dashboard"
