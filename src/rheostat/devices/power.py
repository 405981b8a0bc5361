"""Power models of devices, and Linux RAPL where the machine lets us read it.

A device's `PowerModel` gives its idle and active watts. A request is charged the device's
active power for its share of the batch it ran in: `active_w * batch compute time / batch
size`. Idle power is the device's whether it serves or not, so no request is charged for it.

Where it comes from, in order:

* `rheostat serve --power TYPE=IDLE:ACTIVE` (watts of one device of that type);
* RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`, the CPU packages' energy counters):
  the engine reads the counters while it profiles a device's variants, which keeps the
  device busy, and charges the device its cores' share of the packages' power;
* a default estimate per CPU core / GPU, marked as such (`source: "estimate"`).

Budgets are checked against a variant's energy at batch size 1 (`energy_per_request_j`): the
most a request can cost, since batching only spreads the same work over more requests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rheostat.devices.device import Device, DeviceKind

__all__ = [
    "DEFAULT_CORE_W",
    "DEFAULT_GPU_W",
    "PowerModel",
    "RaplMeter",
    "default_power",
    "parse_power",
]

DEFAULT_CORE_W = (1.0, 6.0)
"""Idle and active watts per CPU core: a rough figure for a current x86 core at full load,
used only when neither `--power` nor RAPL tell better."""
DEFAULT_GPU_W = (60.0, 300.0)
"""Idle and active watts of a data-centre GPU (an H100 PCIe is rated 350 W)."""
POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class PowerModel:
    idle_w: float
    active_w: float
    source: str  # "config", "rapl" or "estimate"

    def __post_init__(self) -> None:
        if not 0 <= self.idle_w <= self.active_w or self.active_w <= 0:
            raise ValueError(
                f"power: idle {self.idle_w} W and active {self.active_w} W need "
                "0 <= idle <= active and active > 0"
            )

    def item_energy_j(self, busy_s: float, batch_size: int) -> float:
        """One item's share of a batch that kept the device busy for `busy_s`."""
        return self.active_w * busy_s / max(batch_size, 1)


def default_power(device: Device) -> PowerModel:
    if device.kind is DeviceKind.GPU:
        idle, active = DEFAULT_GPU_W
    else:
        idle, active = (w * device.num_threads for w in DEFAULT_CORE_W)
    return PowerModel(idle, active, "estimate")


def parse_power(text: str) -> tuple[str, PowerModel]:
    """`TYPE=IDLE:ACTIVE` (watts), e.g. `cpu1=1.5:7` -> ("cpu1", PowerModel(1.5, 7, config))."""
    device_type, _, watts = text.partition("=")
    idle, _, active = watts.partition(":")
    shape = f"--power {text!r}: expected TYPE=IDLE:ACTIVE watts, e.g. cpu1=1:6"
    try:
        numbers = float(idle), float(active)
    except ValueError:
        raise ValueError(shape) from None
    if not device_type:
        raise ValueError(shape)
    try:
        return device_type, PowerModel(*numbers, "config")
    except ValueError as exc:
        raise ValueError(f"--power {text!r}: {exc}") from None


class RaplMeter:
    """The CPU packages' energy counters (Intel RAPL through Linux powercap), in joules.

    `read_j()` is None where no package counter is readable (no RAPL, a VM, or no
    permission: since 2020 the counters are root-only). Counters wrap at
    `max_energy_range_uj`; `joules_between` accounts for one wrap.
    """

    def __init__(self, root: Path = POWERCAP) -> None:
        self.zones: list[tuple[Path, int]] = []
        if not root.is_dir():
            return
        for zone in sorted(root.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:  # a package's sub-zones (core, dram) are inside it
                continue
            energy, limit = zone / "energy_uj", zone / "max_energy_range_uj"
            try:
                int(energy.read_text())
                wrap = int(limit.read_text()) if limit.is_file() else 2**32
            except (OSError, ValueError):
                continue
            self.zones.append((energy, wrap))

    @property
    def readable(self) -> bool:
        return bool(self.zones)

    def read_uj(self) -> tuple[int, ...] | None:
        try:
            return tuple(int(path.read_text()) for path, _ in self.zones) or None
        except (OSError, ValueError):
            return None

    def joules_between(self, before: tuple[int, ...], after: tuple[int, ...]) -> float:
        total = 0
        for (_, wrap), a, b in zip(self.zones, before, after, strict=True):
            total += b - a if b >= a else b + wrap - a
        return total / 1e6


def share_of_package(device: Device) -> float:
    """The device's share of the CPU packages' power: its cores over the machine's."""
    return device.num_threads / max(os.cpu_count() or 1, 1)
