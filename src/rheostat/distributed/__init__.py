"""Distributed mode on Ray: devices on the cluster's nodes, workers as actors placed there.

The front end (HTTP, router, batching, control plane) stays one process; only the device
workers move to the nodes. Ray is imported only when this mode is used.
"""

from __future__ import annotations

import os
from typing import Any

from rheostat.devices.device import Device
from rheostat.distributed.discovery import TYPE_RESOURCE_PREFIX, discover_devices

__all__ = ["TYPE_RESOURCE_PREFIX", "connect", "discover_devices"]


def connect(address: str, cpus_per_device: int | None = None) -> tuple[Device, ...]:
    """Join the Ray cluster at `address` (`auto`: the one on this machine; `local`: start a
    private one) and return its devices. Ray's usage statistics are off unless the user
    turned them on, and a cluster this starts has no dashboard."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning"}
    if address == "local":
        options["include_dashboard"] = False
    if not ray.is_initialized():
        ray.init(address=address, **options)
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return discover_devices(nodes, cpus_per_device)
