"""What operators see: Prometheus metrics and the per-second series behind the web page.

Both follow every request through the engine's monitors (`RequestRecord`) and every batch a
device runs; the Prometheus collector also reads the engine's live state (plan, queues) at
scrape time.
"""

from rheostat.monitoring.prometheus import ServerMetrics, serve_metrics
from rheostat.monitoring.record import RequestMonitor, RequestRecord, RequestStatus
from rheostat.monitoring.timeseries import TimeSeries

__all__ = [
    "RequestMonitor",
    "RequestRecord",
    "RequestStatus",
    "ServerMetrics",
    "TimeSeries",
    "serve_metrics",
]
