"""Prometheus metrics: Triton's names where they mean the same, rheostat's own beside them.

Counters and histograms follow every request and batch (labelled by `family` and
`variant`); gauges of live state (which variant each device serves, planned load, queue
depths, served accuracy) are read from the engine when Prometheus scrapes. The metrics are
served on their own port (`--metrics-port`, 8002 as in Triton) by prometheus-client's HTTP
server, in a thread, so a scrape never waits on the data plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rheostat.monitoring.record import RequestRecord, RequestStatus
from rheostat.planning import Allocation

if TYPE_CHECKING:
    from rheostat.engine import Engine
    from rheostat.monitoring.timeseries import TimeSeries

__all__ = ["ServerMetrics", "serve_metrics"]

# request latencies from 100 us (digits) to 10 s (a queue in front of a slow model)
LATENCY_BUCKETS_S = (
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
)  # fmt: skip
SOLVE_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class ServerMetrics:
    """The registry and the instruments; a `RequestMonitor` of the engine."""

    def __init__(self, engine: Engine, series: TimeSeries | None = None) -> None:
        self.registry = CollectorRegistry()
        labels = ("family", "variant")
        r = self.registry
        self.success = Counter(
            "nv_inference_request_success", "Successful inference requests", labels, registry=r
        )
        self.failure = Counter(
            "nv_inference_request_failure", "Failed inference requests", (*labels, "reason"),
            registry=r,
        )  # fmt: skip
        self.count = Counter(
            "nv_inference_count", "Inferences performed (items)", labels, registry=r
        )
        self.exec_count = Counter("nv_inference_exec_count", "Batches executed", labels, registry=r)
        self.request_s = Histogram(
            "nv_inference_request_duration_seconds", "Request time, arrival to answer", labels,
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.queue_s = Histogram(
            "nv_inference_queue_duration_seconds", "Time items waited in the queue", labels,
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.compute_s = Histogram(
            "nv_inference_compute_infer_duration_seconds", "Batch compute time per batch",
            labels, buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.violations = Counter(
            "rheostat_slo_violations", "Requests that missed their SLO (late, dropped, shed)",
            ("family", "kind"), registry=r,
        )  # fmt: skip
        self.energy = Counter(
            "rheostat_energy_joules", "Device energy charged to answered requests (each its "
            "share of its batch at the device's active power)", labels, registry=r,
        )  # fmt: skip
        self.shed = Counter(
            "rheostat_shed_requests", "Requests refused with 429 at admission", ("family",),
            registry=r,
        )  # fmt: skip
        self.plan_changes = Counter(
            "rheostat_plan_changes", "Plans that changed some device's variant", registry=r
        )
        self.solve_s = Histogram(
            "rheostat_plan_solve_seconds", "Planner solve time", buckets=SOLVE_BUCKETS_S,
            registry=r,
        )  # fmt: skip
        self.registry.register(_LiveState(engine, series))

    # -- RequestMonitor ---------------------------------------------------------------------
    def finished(self, record: RequestRecord) -> None:
        family, _, variant = record.variant.partition(".")
        family = family or record.family
        if record.status in (RequestStatus.ON_TIME, RequestStatus.LATE):
            self.success.labels(family, variant).inc()
            self.count.labels(family, variant).inc(record.num_items)
            self.request_s.labels(family, variant).observe(record.duration_s)
            self.energy.labels(family, variant).inc(record.energy_j)
            for _ in range(record.num_items):
                self.queue_s.labels(family, variant).observe(record.queue_s)
        else:
            self.failure.labels(family, variant, record.status.value).inc()
        if record.slo_violation:
            self.violations.labels(family, record.status.value).inc(record.num_items)
        if record.status is RequestStatus.SHED:
            self.shed.labels(family).inc(record.num_items)

    def batch(self, variant: str, size: int, compute_s: float) -> None:
        family, _, name = variant.partition(".")
        self.exec_count.labels(family, name).inc()
        self.compute_s.labels(family, name).observe(compute_s)

    # -- control plane ----------------------------------------------------------------------
    def planned(self, allocation: Allocation, changed: bool) -> None:
        self.solve_s.observe(allocation.solve_time_s)
        if changed:
            self.plan_changes.inc()


class _LiveState(Collector):
    """Gauges read from the engine at scrape time."""

    def __init__(self, engine: Engine, series: TimeSeries | None) -> None:
        self.engine = engine
        self.series = series

    def collect(self) -> Iterator[Metric]:
        plan = self.engine.plan
        serving = GaugeMetricFamily(
            "rheostat_device_variant", "1 where the plan routes a family's traffic to a "
            "variant on a device", labels=("device", "family", "variant"),
        )  # fmt: skip
        planned = GaugeMetricFamily(
            "rheostat_planned_share", "Share of a family's traffic the plan sends to a replica",
            labels=("device", "family", "variant"),
        )  # fmt: skip
        for family, weights in list(plan.split.items()):
            total = sum(weights.values()) or 1.0
            for replica, weight in list(weights.items()):
                labels = (replica.device, family, replica.variant)
                serving.add_metric(labels, 1.0)
                planned.add_metric(labels, weight / total)
        yield serving
        yield planned
        yield self._queues()
        yield self._accuracy()

    def _queues(self) -> Metric:
        depth = GaugeMetricFamily(
            "rheostat_queue_depth", "Items waiting per variant and device",
            labels=("device", "family", "variant"),
        )  # fmt: skip
        for device, runner in list(self.engine.runners.items()):
            for key, queue in list(runner.replicas.items()):
                family, _, variant = key.partition(".")
                depth.add_metric((device, family, variant), float(len(queue.items)))
        return depth

    def _accuracy(self) -> Metric:
        gauge = GaugeMetricFamily(
            "rheostat_served_accuracy", "Mean accuracy of the answers of the last 10 s",
            labels=("family",),
        )  # fmt: skip
        if self.series is not None:
            for family in list(self.engine.repository.families):
                value = self.series.recent_accuracy(family)
                if value is not None:
                    gauge.add_metric((family,), value)
        return gauge


def serve_metrics(metrics: ServerMetrics, host: str, port: int) -> int:
    """Serve `/metrics` on `host:port` in a thread (port 0: any free one); returns the port."""
    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    return int(server.server_port)
