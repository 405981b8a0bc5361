"""A Plan: which variants each device holds and how each family's load is split.

The control plane (planner + controller) will produce plans; until then the server runs the
static plan from `default_plan`: every variant loaded on every device its family allows (so
any variant can be pinned), and each family's traffic split evenly over the replicas of its
most accurate variant.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rheostat.devices.device import Device
from rheostat.repository.loader import Repository

__all__ = ["Plan", "Replica", "default_plan"]


@dataclass(frozen=True, order=True)
class Replica:
    """One variant loaded on one device."""

    family: str
    variant: str
    device: str

    @property
    def key(self) -> str:
        """The variant's name as the API knows it: `family.variant`."""
        return f"{self.family}.{self.variant}"


@dataclass(frozen=True)
class Plan:
    replicas: frozenset[Replica]
    split: Mapping[str, Mapping[Replica, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for family, weights in self.split.items():
            stray = [r for r in weights if r not in self.replicas or r.family != family]
            if stray:
                raise ValueError(f"split of {family!r} names replicas not in the plan: {stray}")
            if any(w < 0 for w in weights.values()) or not any(weights.values()):
                raise ValueError(f"split of {family!r} needs non-negative weights, some positive")

    def on_device(self, device: str) -> list[Replica]:
        return sorted(r for r in self.replicas if r.device == device)

    def of_family(self, family: str) -> list[Replica]:
        return list(self._by_family.get(family, ()))

    @functools.cached_property
    def _by_family(self) -> dict[str, tuple[Replica, ...]]:
        """Replicas per family, sorted once per plan: routing asks on every request."""
        families: dict[str, list[Replica]] = {}
        for replica in sorted(self.replicas):
            families.setdefault(replica.family, []).append(replica)
        return {family: tuple(replicas) for family, replicas in families.items()}


def default_plan(repository: Repository, devices: Iterable[Device]) -> Plan:
    devices = list(devices)
    replicas: set[Replica] = set()
    split: dict[str, dict[Replica, float]] = {}
    for family in repository.families.values():
        hosts = [d for d in devices if d.kind.value in family.config.device_kinds]
        if not hosts:
            continue
        for variant in family.config.variants:
            replicas.update(Replica(family.name, variant, d.name) for d in hosts)
        best = max(family.config.variants.values(), key=lambda v: v.accuracy).name
        split[family.name] = {Replica(family.name, best, d.name): 1.0 for d in hosts}
    return Plan(frozenset(replicas), split)
