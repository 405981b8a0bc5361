"""What the simulator knows about a cluster: devices, variants and their latency profiles.

A `ClusterModel` holds, per variant and device type, the median batch latency (what a
simulated batch takes, give or take its spread) and a tail latency (p90 or p99: what a
cautious planner plans with, and what sets the spread of the simulated latencies). Two
sources:

- `proteus_cluster`: Proteus' published profiles (50th and 90th percentiles) and its
  40-device cluster (ASPLOS'24: 10 CPUs, 10 "VPUs" simulated as CPUs, 10 GTX 1080 Ti, 10
  V100), read from `../shared/data/proteus` (licensed for comparison only: never shipped);
- `repository_cluster`: a model repository's families with the profiles `rheostat profile`
  stored (p50 and p99 per device type), for the devices given.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rheostat.backends.profiled import lognormal_sigma
from rheostat.planning import DeviceSpec, VariantSpec, load_proteus_profiles
from rheostat.profiler import read_profile
from rheostat.repository.loader import Repository

__all__ = ["PROTEUS_CLUSTER", "ClusterModel", "proteus_cluster", "repository_cluster"]

PROTEUS_CLUSTER = (("cpu", 20), ("1080ti", 10), ("v100", 10))
"""Device types (as `load_proteus_profiles` names them) and counts of the paper's cluster."""


@dataclass(frozen=True)
class ClusterModel:
    devices: tuple[DeviceSpec, ...]
    median: tuple[VariantSpec, ...]
    tail: tuple[VariantSpec, ...]
    tail_quantile: float
    slo_s: Mapping[str, float]
    """Each family's default SLO (a request's own SLO from the trace wins)."""

    def __post_init__(self) -> None:
        if {v.key for v in self.median} != {v.key for v in self.tail}:
            raise ValueError("median and tail profiles must name the same variants")
        missing = sorted({v.family for v in self.median} - set(self.slo_s))
        if missing:
            raise ValueError(f"families {missing} have no default SLO")

    def spread(self) -> dict[tuple[str, str, str], float]:
        """Log-normal sigma per (family, variant, device type): the median over batch
        sizes of the sigma that puts the tail quantile at the tail latency."""
        tails = {v.key: v for v in self.tail}
        sigma: dict[tuple[str, str, str], float] = {}
        for variant in self.median:
            tail = tails[variant.key]
            for device_type, points in variant.latency_s.items():
                values = [
                    lognormal_sigma(p50, max(tail.latency_s[device_type].get(b, p50), p50),
                                    self.tail_quantile)
                    for b, p50 in points.items()
                ]  # fmt: skip
                sigma[(*variant.key, device_type)] = statistics.median(values)
        return sigma

    def normalized_accuracy(self) -> dict[str, float]:
        """`family.variant` -> accuracy / the family's best (Proteus' normalisation)."""
        best: dict[str, float] = {}
        for v in self.median:
            best[v.family] = max(best.get(v.family, 0.0), v.accuracy)
        return {f"{v.family}.{v.name}": v.accuracy / (best[v.family] or 1.0) for v in self.median}


def proteus_cluster(proteus_dir: Path, slo_s: float = 0.3) -> ClusterModel:
    csv_path = proteus_dir / "profiling" / "aggregate_profiled.csv"
    variants_dir = proteus_dir / "traces" / "model_variants"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"Proteus profiles not found at {csv_path}: the comparison needs "
            "../shared/data/proteus (licensed for comparison only, not in this repository)"
        )
    median = load_proteus_profiles(csv_path, variants_dir, column="50th_pct")
    tail = load_proteus_profiles(csv_path, variants_dir, column="90th_pct")
    median, tail = _common_points(median, tail)
    devices = tuple(
        DeviceSpec(f"{device_type}-{i}", device_type)
        for device_type, count in PROTEUS_CLUSTER
        for i in range(count)
    )
    families = {v.family for v in median}
    return ClusterModel(devices, median, tail, 0.90, dict.fromkeys(sorted(families), slo_s))


def _common_points(
    median: Sequence[VariantSpec], tail: Sequence[VariantSpec]
) -> tuple[tuple[VariantSpec, ...], tuple[VariantSpec, ...]]:
    """Keep the (device type, batch) points both columns have, tail >= median."""
    tails = {v.key: v for v in tail}
    out_median, out_tail = [], []
    for variant in median:
        other = tails.get(variant.key)
        if other is None:
            continue
        med: dict[str, dict[int, float]] = {}
        tl: dict[str, dict[int, float]] = {}
        for device_type, points in variant.latency_s.items():
            for b, s in points.items():
                t = other.latency_s.get(device_type, {}).get(b)
                if t is not None:
                    med.setdefault(device_type, {})[b] = s
                    tl.setdefault(device_type, {})[b] = max(t, s)
        if med:
            out_median.append(VariantSpec(variant.family, variant.name, variant.accuracy, med))
            out_tail.append(VariantSpec(variant.family, variant.name, variant.accuracy, tl))
    return tuple(out_median), tuple(out_tail)


def repository_cluster(repository: Repository, devices: Sequence[DeviceSpec]) -> ClusterModel:
    """Families of `repository` with the profiles stored for the devices' types."""
    median: list[VariantSpec] = []
    tail: list[VariantSpec] = []
    slo: dict[str, float] = {}
    for family in repository.families.values():
        for name, variant in family.config.variants.items():
            p50: dict[str, dict[int, float]] = {}
            p99: dict[str, dict[int, float]] = {}
            for device_type in sorted({d.device_type for d in devices}):
                stored = read_profile(family, name, device_type)
                if stored is None:
                    continue
                points = stored["batch"].items()
                p50[device_type] = {int(b): float(d["p50_s"]) for b, d in points}
                p99[device_type] = {
                    int(b): max(float(d["p99_s"]), float(d["p50_s"])) for b, d in points
                }
            if not p50:
                continue
            median.append(VariantSpec(family.name, name, variant.accuracy, p50))
            tail.append(VariantSpec(family.name, name, variant.accuracy, p99))
            slo[family.name] = family.config.slo_ms / 1e3
    if not median:
        types = sorted({d.device_type for d in devices})
        raise ValueError(
            f"no stored profile for device types {types} in {repository.path}: "
            "run `rheostat profile` first"
        )
    return ClusterModel(tuple(devices), tuple(median), tuple(tail), 0.99, slo)
