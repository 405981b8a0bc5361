"""A real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`): a head node
without CPUs (where the server's front end joins as a driver) and worker nodes with their own
CPUs and device-type resources. Usage statistics and the dashboard are off."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

STORE_BYTES = 100 * 2**20

DIGIT = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [3.0] * 64}
BODY = {"inputs": [DIGIT]}
"""One digits request (the family the Ray tests serve)."""


@dataclass
class RayCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    nodes: list[Any]  # the worker nodes, in the order asked for

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def node_id(self, index: int) -> str:
        return str(self.nodes[index].node_id)


@contextmanager
def ray_cluster(labels: Sequence[str]) -> Iterator[RayCluster]:
    """One one-CPU worker node per label (its `device_type:<label>` resource)."""
    pytest.importorskip("ray", reason="distributed mode needs Ray (pip install 'rheostat[ray]')")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": STORE_BYTES,
        },
    )
    try:
        nodes = [
            cluster.add_node(
                num_cpus=1,
                resources={f"device_type:{label}": 1},
                object_store_memory=STORE_BYTES,
            )
            for label in labels
        ]
        cluster.wait_for_nodes()
        yield RayCluster(cluster, nodes)
    finally:
        cluster.shutdown()
