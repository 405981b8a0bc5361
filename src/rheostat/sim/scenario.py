"""Scenario files: which cluster, which traffic and which policies `rheostat simulate` runs.

A scenario is YAML with four sections (paths relative to the file):

```yaml
cluster:                 # one of three sources
  repository: model_repository        # families + profiles stored by `rheostat profile`
  devices: [{type: cpu1, count: 2}]   # device types as `rheostat profile` names them
# or  proteus: ../shared/data/proteus  (Proteus' 40-device cluster and profiles; slo_ms)
# or  devices: [...] and families: [{name, slo_ms, variants: [{name, accuracy,
#         latency_ms: {device_type: {batch: ms}}, tail_factor}]}]   (written inline)
trace:                   # a list, merged: see rheostat.sim.traces.build_trace
  - {kind: poisson, family: digits, rate_rps: 200, duration_s: 30, seed: 1}
policies: [proteus, rheostat]         # default: every policy
settings: {load_time_s: 1.0, seed: 0}
```

Every error names the section, the key and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rheostat.planning import DeviceSpec, VariantSpec
from rheostat.repository.loader import load_repository
from rheostat.sim.model import ClusterModel, proteus_cluster, repository_cluster
from rheostat.sim.policies import POLICIES, PolicySpec, policy
from rheostat.sim.simulation import SimSettings
from rheostat.sim.traces import Trace, build_traces

__all__ = ["Scenario", "inline_cluster", "load_scenario"]

_SECTIONS = {"cluster", "trace", "policies", "settings"}


@dataclass(frozen=True)
class Scenario:
    path: Path
    model: ClusterModel
    trace: Trace
    policies: tuple[PolicySpec, ...]
    settings: SimSettings


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"scenario {path}: cannot read it as YAML: {error}") from error
    if not isinstance(data, Mapping):
        raise ValueError(f"scenario {path}: expected a mapping with {sorted(_SECTIONS)}")
    unknown = sorted(set(data) - _SECTIONS, key=str)
    if unknown or "cluster" not in data or "trace" not in data:
        raise ValueError(
            f"scenario {path}: sections {sorted(_SECTIONS)} expected (cluster and trace "
            f"required); unknown: {unknown}"
        )
    base = path.parent
    try:
        model = _cluster(data["cluster"], base)
        trace = build_traces(_as_list(data["trace"], "trace"), base)
        policies = tuple(policy(str(p)) for p in _as_list(data.get("policies", list(POLICIES))))
        settings = SimSettings(**_as_mapping(data.get("settings", {}), "settings"))
    except KeyError as error:
        raise ValueError(f"scenario {path}: missing key {error}") from error
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise ValueError(f"scenario {path}: {error}") from error
    missing = sorted(set(trace.families) - set(model.slo_s))
    if missing:
        raise ValueError(
            f"scenario {path}: the trace has families {missing} the cluster does not serve "
            f"(it serves {sorted(model.slo_s)})"
        )
    return Scenario(path, model, trace, policies, settings)


def _as_list(value: Any, section: str = "policies") -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{section}: expected a non-empty list, got {value!r}")
    return value


def _as_mapping(value: Any, section: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{section}: expected a mapping, got {value!r}")
    return dict(value)


def _cluster(spec: Any, base: Path) -> ClusterModel:
    spec = _as_mapping(spec, "cluster")
    if "proteus" in spec:
        return proteus_cluster(base / str(spec["proteus"]), float(spec.get("slo_ms", 300)) / 1e3)
    devices = _devices(spec.get("devices"))
    if "repository" in spec:
        repository = load_repository(base / str(spec["repository"]))
        return repository_cluster(repository, devices)
    if "families" in spec:
        return inline_cluster(devices, _as_list(spec["families"], "cluster.families"))
    raise ValueError("cluster: expected 'proteus', or 'devices' with 'repository' or 'families'")


def _devices(spec: Any) -> tuple[DeviceSpec, ...]:
    devices: list[DeviceSpec] = []
    for raw in _as_list(spec, "cluster.devices"):
        entry = _as_mapping(raw, "cluster.devices[]")
        if "type" not in entry:
            raise ValueError(f"cluster.devices: {entry} needs a 'type' (and optional 'count')")
        count = int(entry.get("count", 1))
        if count < 1:
            raise ValueError(f"cluster.devices: count {count} of {entry['type']} must be >= 1")
        device_type = str(entry["type"])
        start = sum(1 for d in devices if d.device_type == device_type)
        devices.extend(DeviceSpec(f"{device_type}-{start + i}", device_type) for i in range(count))
    return tuple(devices)


def inline_cluster(devices: tuple[DeviceSpec, ...], families: list[Any]) -> ClusterModel:
    """Families written in the scenario: latencies in ms per device type and batch size;
    the tail (p99) is the median times `tail_factor` (default 1.2)."""
    median: list[VariantSpec] = []
    tail: list[VariantSpec] = []
    slo: dict[str, float] = {}
    for raw in families:
        family = _as_mapping(raw, "cluster.families[]")
        name = str(family["name"])
        slo[name] = float(family["slo_ms"]) / 1e3
        for variant in _as_list(family.get("variants"), f"cluster.families[{name}].variants"):
            pair = _inline_variant(name, _as_mapping(variant, f"{name}.variants[]"))
            median.append(pair[0])
            tail.append(pair[1])
    return ClusterModel(devices, tuple(median), tuple(tail), 0.99, slo)


def _inline_variant(family: str, spec: dict[str, Any]) -> tuple[VariantSpec, VariantSpec]:
    factor = float(spec.get("tail_factor", 1.2))
    if factor < 1:
        raise ValueError(f"{family}.{spec.get('name')}: tail_factor {factor} must be >= 1")
    points = {
        str(t): {int(b): float(ms) / 1e3 for b, ms in _as_mapping(p, "latency_ms").items()}
        for t, p in _as_mapping(spec["latency_ms"], "latency_ms").items()
    }
    name, accuracy = str(spec["name"]), float(spec["accuracy"])
    scaled = {t: {b: s * factor for b, s in p.items()} for t, p in points.items()}
    return VariantSpec(family, name, accuracy, points), VariantSpec(family, name, accuracy, scaled)
