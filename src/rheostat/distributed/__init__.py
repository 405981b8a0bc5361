"""Distributed mode on Ray: devices on the cluster's nodes, workers as actors placed there.

The front end (HTTP, router, batching, control plane) stays one process; only the device
workers move to the nodes. The engine reads the node table every few seconds (`nodes`,
`discover_devices`), so nodes that join while it serves become devices too. Ray is
imported only when this mode is used.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from rheostat.devices.device import Device
from rheostat.distributed.discovery import TYPE_RESOURCE_PREFIX, discover_devices

__all__ = ["TYPE_RESOURCE_PREFIX", "connect", "discover_devices", "node_alive", "nodes"]


PROBE_TIMEOUT_S = 5.0


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast, with the address in the message, where nothing listens at `host:port`
    (Ray itself retries an unreachable cluster for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # `auto`, `local`, `ray://...`: Ray resolves these itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc})") from None


def connect(address: str, cpus_per_device: int | None = None) -> tuple[Device, ...]:
    """Join the Ray cluster at `address` (`auto`: the one on this machine; `local`: start a
    private one) and return its devices. Ray's usage statistics are off unless the user
    turned them on, and a cluster this starts has no dashboard."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    probe(address)
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning"}
    if address == "local":
        options["include_dashboard"] = False
    if not ray.is_initialized():
        ray.init(address=address, **options)
    return discover_devices(nodes(), cpus_per_device)


def nodes() -> list[dict[str, Any]]:
    """Ray's node table (blocking: a call to the cluster's control store)."""
    import ray

    table: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return table


def node_alive(node_id: str) -> bool | None:
    """Whether Ray lists the node as alive (None: not listed, e.g. not yet seen)."""
    for node in nodes():
        if node.get("NodeID") == node_id:
            return bool(node.get("Alive"))
    return None
