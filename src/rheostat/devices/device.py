"""Devices: what a worker process runs on.

A CPU device is a set of cores: its worker is pinned to them and gives ONNX Runtime one
intra-op thread per core, so two CPU devices on one machine do not fight over cores. A GPU
device is one CUDA device index, used where ONNX Runtime has the CUDA provider.

A device on another machine of a Ray cluster carries that machine's Ray `node_id` (its cores
are counted there, not pinned here) and, where the node declares one, a `label`: the device
type that profiles and plans go by (nodes of one label perform alike).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Device", "DeviceKind", "default_devices", "parse_device"]


class DeviceKind(StrEnum):
    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True)
class Device:
    name: str
    kind: DeviceKind
    cores: tuple[int, ...] = ()
    gpu_index: int | None = None
    node_id: str | None = None  # a Ray node: the device's worker is an actor there
    label: str | None = None  # the device type, where the cluster names one

    def __post_init__(self) -> None:
        if self.kind is DeviceKind.CPU and not self.cores:
            raise ValueError(f"CPU device {self.name!r} needs at least one core")
        if self.kind is DeviceKind.GPU and self.gpu_index is None:
            raise ValueError(f"GPU device {self.name!r} needs a gpu_index")

    @property
    def remote(self) -> bool:
        return self.node_id is not None

    @property
    def num_threads(self) -> int:
        return max(len(self.cores), 1)

    @property
    def device_type(self) -> str:
        """Devices of one type perform alike: profiles are stored and planned per type."""
        if self.label:
            return self.label
        if self.kind is DeviceKind.GPU:
            return "cuda"
        return f"cpu{self.num_threads}"


def _cores(spec: str, text: str) -> tuple[int, ...]:
    cores: list[int] = []
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"device {text!r}: {part!r} is not a core number or range like 0-3")
        cores.extend(range(int(lo), int(hi or lo) + 1))
    if not cores:
        raise ValueError(f"device {text!r}: expected cores, e.g. cpu:0-1 or cpu:0,2")
    available = os.sched_getaffinity(0)
    missing = sorted(set(cores) - available)
    if missing:
        raise ValueError(
            f"device {text!r}: cores {missing} are not available (have {sorted(available)})"
        )
    return tuple(sorted(set(cores)))


def parse_device(text: str, index: int = 0) -> Device:
    """Parse `cpu:0-1`, `cpu:0,2`, `cpu` (all cores) or `cuda:0`; name defaults to kind+index."""
    name, _, spec = text.partition("=") if "=" in text else ("", "", text)
    kind, _, rest = spec.partition(":")
    if kind == "cpu":
        cores = _cores(rest, text) if rest else tuple(sorted(os.sched_getaffinity(0)))
        return Device(name or f"cpu{index}", DeviceKind.CPU, cores)
    if kind in ("cuda", "gpu"):
        if not rest.isdigit():
            raise ValueError(f"device {text!r}: expected a GPU index, e.g. cuda:0")
        return Device(name or f"gpu{rest}", DeviceKind.GPU, gpu_index=int(rest))
    raise ValueError(f"device {text!r}: expected cpu[:cores] or cuda:<index>, optionally NAME=...")


def default_devices() -> tuple[Device, ...]:
    """One CPU device holding every core this process may use."""
    return (Device("cpu0", DeviceKind.CPU, tuple(sorted(os.sched_getaffinity(0)))),)
