"""Devices from Ray's node table (pure logic: the input is what `ray.nodes()` returns)."""

from __future__ import annotations

from typing import Any

import pytest

from rheostat.devices.device import DeviceKind
from rheostat.distributed.discovery import discover_devices


def node(node_id: str, alive: bool = True, **resources: float) -> dict[str, Any]:
    return {"NodeID": node_id, "Alive": alive, "Resources": {"memory": 1e9, **resources}}


def test_each_alive_node_with_cpus_is_a_device_of_its_labelled_type() -> None:
    nodes = [
        node("bb" * 28, CPU=2, **{"device_type:edge-a": 1}),
        node("00" * 28, **{"node:__internal_head__": 1}),  # head without CPUs: the front end
        node("aa" * 28, CPU=1, **{"device_type:edge-b": 1}),
        node("cc" * 28, alive=False, CPU=4),
        node("dd" * 28, CPU=3),
    ]
    devices = discover_devices(nodes)
    assert [(d.name, d.device_type, d.num_threads) for d in devices] == [
        ("edge-b.aaaaaa.cpu0", "edge-b", 1),
        ("edge-a.bbbbbb.cpu0", "edge-a", 2),
        ("dddddddd.cpu0", "cpu3", 3),
    ]
    assert [d.node_id for d in devices] == ["aa" * 28, "bb" * 28, "dd" * 28]
    assert all(d.remote and d.kind is DeviceKind.CPU for d in devices)


def test_cpus_split_into_devices_and_gpus_are_devices_of_their_own() -> None:
    devices = discover_devices([node("ab" * 28, CPU=5, GPU=2, **{"device_type:box": 1})], 2)
    assert [(d.name, d.kind, d.cores, d.gpu_index, d.device_type) for d in devices] == [
        ("box.ababab.cpu0", DeviceKind.CPU, (0, 1), None, "box"),
        ("box.ababab.cpu1", DeviceKind.CPU, (2, 3), None, "box"),
        ("box.ababab.gpu0", DeviceKind.GPU, (), 0, "box.cuda"),
        ("box.ababab.gpu1", DeviceKind.GPU, (), 1, "box.cuda"),
    ]


@pytest.mark.parametrize(
    ("nodes", "cpus", "message"),
    [
        ([node("ab" * 28, CPU=1, **{"device_type:a": 1, "device_type:b": 1})], None, "several"),
        ([node("ab" * 28, CPU=1, **{"device_type:has space": 1})], None, "'has space'"),
        ([node("ab" * 28, **{"node:__internal_head__": 1})], None, "no alive node"),
        ([node("ab" * 28, CPU=2)], 0, "cpus_per_device 0"),
    ],
)
def test_bad_clusters_are_named(
    nodes: list[dict[str, Any]], cpus: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        discover_devices(nodes, cpus)
