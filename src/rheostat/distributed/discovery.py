"""Devices from a Ray cluster's nodes (pure: the input is what `ray.nodes()` returns).

Every alive node with CPUs gives CPU devices of `cpus_per_device` cores each (by default one
device holding all of the node's CPUs), and one GPU device per GPU. A node states its device
type with a custom resource `device_type:<label>` (`ray start --resources
'{"device_type:jetson-orin": 1}'`): devices of one type are profiled and planned as alike,
so label nodes of one hardware kind the same (a labelled node's GPUs are `<label>.cuda`).
Without a label the type is the local one
(`cpu<threads>` or `cuda`). A node with no CPU and no GPU (a head node started with
`--num-cpus 0`, where the front end runs) gives none.

Names are `<node>.cpu<k>` / `<node>.gpu<k>`, where `<node>` is the label followed by the first
six hex digits of the node id (the id alone without a label): stable for the life of the
node, readable in logs and metrics, and distinct when several nodes share a machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rheostat.devices.device import Device, DeviceKind

__all__ = ["TYPE_RESOURCE_PREFIX", "discover_devices"]

TYPE_RESOURCE_PREFIX = "device_type:"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _label(node_id: str, resources: Mapping[str, float]) -> str | None:
    labels = sorted(
        name.removeprefix(TYPE_RESOURCE_PREFIX)
        for name, amount in resources.items()
        if name.startswith(TYPE_RESOURCE_PREFIX) and amount > 0
    )
    if len(labels) > 1:
        raise ValueError(
            f"Ray node {node_id}: several device types {labels}; expected at most one "
            f"{TYPE_RESOURCE_PREFIX}<label> resource per node"
        )
    if labels and not _LABEL.fullmatch(labels[0]):
        raise ValueError(
            f"Ray node {node_id}: device type {labels[0]!r} must be letters, digits, '_', "
            "'.' or '-' (at most 64), starting with a letter or digit"
        )
    return labels[0] if labels else None


def discover_devices(
    nodes: Sequence[Mapping[str, Any]], cpus_per_device: int | None = None
) -> tuple[Device, ...]:
    """The devices of the alive nodes, ordered by node id then kind and index."""
    if cpus_per_device is not None and cpus_per_device < 1:
        raise ValueError(f"cpus_per_device {cpus_per_device} must be >= 1")
    devices: list[Device] = []
    for node in sorted(nodes, key=lambda n: str(n.get("NodeID", ""))):
        if not node.get("Alive", False):
            continue
        node_id = str(node["NodeID"])
        resources: Mapping[str, float] = node.get("Resources", {})
        label = _label(node_id, resources)
        prefix = f"{label}.{node_id[:6]}" if label else node_id[:8]
        cpus = int(resources.get("CPU", 0))
        size = cpus_per_device or cpus
        for k in range(cpus // size if size else 0):
            devices.append(
                Device(
                    f"{prefix}.cpu{k}",
                    DeviceKind.CPU,
                    tuple(range(k * size, (k + 1) * size)),
                    node_id=node_id,
                    label=label,
                )
            )
        for k in range(int(resources.get("GPU", 0))):
            devices.append(
                Device(
                    f"{prefix}.gpu{k}",
                    DeviceKind.GPU,
                    gpu_index=k,
                    node_id=node_id,
                    label=f"{label}.cuda" if label else None,
                )
            )
    if not devices:
        raise ValueError(
            "the Ray cluster has no alive node with CPUs or GPUs to serve on "
            f"(nodes: {[n.get('NodeID', '?')[:8] for n in nodes]})"
        )
    return tuple(devices)
