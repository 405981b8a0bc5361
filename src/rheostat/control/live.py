"""The control plane wired to the live engine.

`LiveControl` is the shared `ControlPlane` observing every request of the engine, planning
from what the engine measured (each replica's latency profile on its device) and applying
the planner's `Allocation` as the engine's traffic split. Solves run in a thread, so the
server keeps serving on the old plan while HiGHS works.

The planner sees each replica's latency as measured at load time, not the online-corrected
profile the batch policy uses: that one only learns from batches that run, so a variant the
plan dropped under contention would look slow for ever and never come back. Load-time
profiles are medians and the planner wants tail latency, so they are scaled by
`TAIL_FACTOR`; a measured p99 profile from `rheostat profile` replaces this estimate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rheostat.control.controller import ControllerConfig
from rheostat.control.plane import ControlPlane, PlanningSettings
from rheostat.devices.device import Device
from rheostat.engine import Engine
from rheostat.planning import Allocation, DeviceSpec, PlannerName, VariantSpec, make_planner

__all__ = ["HEADROOM", "SWAP_PENALTY", "TAIL_FACTOR", "LiveControl", "ThreadSolveRunner"]

TAIL_FACTOR = 1.5
"""Tail (p99) over median batch latency assumed when only medians are known."""

SWAP_PENALTY = 1e-4
"""Every variant stays loaded, so changing a device's variant only changes the split: a
token penalty that breaks ties toward the current plan without keeping a worse one (the
accuracy of EfficientNet-Lite1 and -Lite2 differs by 0.008, less than the planner's default
penalty of 0.01 per device)."""

HEADROOM = 0.25
"""Capacity planned above the estimated rate: rates are estimates, and on a small machine
the HTTP front end and the clients share the devices' cores, which the profiles (taken on
idle cores) do not see."""


class ThreadSolveRunner:
    """Solves in the loop's default thread pool; submit from the event loop's thread."""

    def submit(
        self, solve: Callable[[], Allocation], on_done: Callable[[Allocation], None]
    ) -> None:
        future = asyncio.get_running_loop().run_in_executor(None, solve)
        future.add_done_callback(lambda f: None if f.cancelled() else on_done(f.result()))


def device_type(engine: Engine, device: str) -> str:
    return next(d for d in engine.config.devices if d.name == device).device_type


def engine_variants(engine: Engine) -> tuple[VariantSpec, ...]:
    """The planner's view of the engine's variants: load-time profiles as tail latencies."""
    latency: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    for replica, base in engine.base_profiles.items():
        points = engine.tail_profiles.get(replica) or {b: s * TAIL_FACTOR for b, s in base.items()}
        per_type = latency.setdefault((replica.family, replica.variant), {})
        per_type.setdefault(device_type(engine, replica.device), points)
    families = engine.repository.families
    return tuple(
        VariantSpec(family, name, families[family].config.variants[name].accuracy, points)
        for (family, name), points in sorted(latency.items())
    )


class LiveControl(ControlPlane):
    """The control plane on the engine: wall clock, solves in a thread, splits applied at
    once (every variant stays loaded on every device it may run on)."""

    def __init__(
        self,
        engine: Engine,
        planner: PlannerName = PlannerName.MILP,
        config: ControllerConfig | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.planner = make_planner(planner)
        super().__init__(
            clock=engine.clock,
            devices=[self._spec(d) for d in engine.config.devices],
            variants=lambda: engine_variants(engine),
            slo_s=lambda family: engine.repository.families[family].config.slo_ms / 1e3,
            solve=self.planner.solve,
            apply_split=engine.set_split,
            runner=ThreadSolveRunner(),
            config=config,
            settings=PlanningSettings(headroom=HEADROOM, swap_penalty=SWAP_PENALTY),
            report=report,
            energy_budget=engine.energy_budget,
        )

    def _spec(self, device: Device) -> DeviceSpec:
        power = self.engine.power.get(device.name)
        return DeviceSpec(device.name, device.device_type, active_w=power.active_w if power else 0)

    def start(self) -> None:
        self.engine.observers.append(self)
        self.engine.device_listeners.append(self._devices_changed)
        self.engine.policy_listeners.append(self._policies_changed)
        # the devices' power is known once the engine has started (measured or configured)
        self.devices = tuple(self._spec(d) for d in self.engine.live_devices)
        super().start()

    def _policies_changed(self, reason: str) -> None:
        """An app's policy changed: an energy budget may bind differently, so plan again."""
        if self.controller is not None:
            self.controller.request(reason)

    def _devices_changed(self, devices: tuple[Device, ...], reason: str) -> None:
        self.set_devices([self._spec(d) for d in devices], reason)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "planner": type(self.planner).__name__}
