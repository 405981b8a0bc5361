"""The server's data plane on the virtual clock: the same router, admission, device runners
and batch policies as `rheostat serve`, with profiled devices instead of worker processes.

Each device holds one active variant, as in Proteus' model of a cluster. Applying a new
split costs what it costs on real hardware: a device whose variant changes loads the new
one for `load_time_s` while the old one keeps serving its share; then the router switches
and the old replica drains (requests already queued there finish). No request is dropped by
a re-plan.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rheostat.admission import Admission
from rheostat.backends.profiled import ProfiledExecutor
from rheostat.batching import make_policy
from rheostat.clock import Clock, Timer
from rheostat.control.plane import Split
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.runner import DeviceRunner, ReplicaQueue
from rheostat.plan import Plan, Replica
from rheostat.planning import DeviceSpec, VariantSpec
from rheostat.profiling import LatencyProfile
from rheostat.repository.schema import DynamicBatching
from rheostat.routing import Router, RoutingName
from rheostat.stats import StatsBook

__all__ = ["ClusterSettings", "SimCluster"]


@dataclass(frozen=True)
class ClusterSettings:
    batching: DynamicBatching = field(default_factory=DynamicBatching)
    """Batch policy of every replica (the family config's `dynamic_batching`)."""
    max_batch_size: int = 16
    max_queue_size: int = 100_000
    """Per replica; the simulator sheds by expected finish time long before this."""
    routing: RoutingName = RoutingName.SPLIT
    ladder: bool = True
    """Fall back to other replicas and cheaper variants when the planned one cannot make it."""
    load_time_s: float = 1.0
    """Time to load a variant on a device when the plan changes it."""
    seed: int = 0
    """Seeds the devices' latency draws."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue_size < 1:
            raise ValueError(
                f"max_batch_size={self.max_batch_size} and max_queue_size="
                f"{self.max_queue_size} must be >= 1"
            )
        if self.load_time_s < 0:
            raise ValueError(f"load_time_s={self.load_time_s} must be >= 0")


class SimCluster:
    def __init__(
        self,
        clock: Clock,
        devices: Sequence[DeviceSpec],
        variants: Sequence[VariantSpec],
        spread: Mapping[tuple[str, str, str], float] | None = None,
        settings: ClusterSettings | None = None,
    ) -> None:
        """`variants` carry median batch latencies per device type (what a device takes);
        `spread[(family, variant, device_type)]` is the log-normal sigma of its tail."""
        self.clock = clock
        self.settings = settings or ClusterSettings()
        self.devices = {d.name: d for d in devices}
        self.variants = {f"{v.family}.{v.name}": v for v in variants}
        self.spread = dict(spread or {})
        accuracy = {key: v.accuracy for key, v in self.variants.items()}
        least_loaded = self.settings.routing is RoutingName.LEAST_LOADED
        self.router = Router(Plan(frozenset()), accuracy, self._load if least_loaded else None)
        self.runners: dict[str, DeviceRunner] = {}
        self.executors: dict[str, ProfiledExecutor] = {}
        self.profiles: dict[Replica, LatencyProfile] = {}
        self.stats = StatsBook()
        self.admission = Admission(
            clock, self.router, self.runners, self.profiles, self.stats, self.settings.ladder
        )
        for device in devices:
            self._add_device(device)
        self.loaded: dict[str, Replica | None] = dict.fromkeys(self.devices)
        self.loading: dict[str, tuple[Replica, Timer]] = {}
        self.num_loads = 0
        self._target: Split = {}
        self._weights: dict[Replica, float] = {}

    def _add_device(self, device: DeviceSpec) -> None:
        seed = self.settings.seed * 1_000_003 + zlib.crc32(device.name.encode())
        executor = ProfiledExecutor(self.clock, {}, seed=seed)
        # A simulated device needs no cores; the runner only uses its name.
        runner = DeviceRunner(
            Device(device.name, DeviceKind.CPU, (0,)), self.clock, executor, self.admission.retry
        )
        self.executors[device.name] = executor
        self.runners[device.name] = runner

    def _load(self, replica: Replica) -> float:
        """Least-loaded routing's view: when a request queued now would finish."""
        runner = self.runners[replica.device]
        if replica.key not in runner.replicas:
            return float("inf")
        return runner.expected_finish_s(replica.key)

    # -- plans ------------------------------------------------------------------------------
    def install(self, split: Split) -> None:
        """Load `split`'s variants at once (before traffic starts) and route by it."""
        self._target = split
        for weights in split.values():
            for replica in weights:
                self._switch(replica.device, replica)
        self._publish()

    def apply_split(self, split: Split) -> None:
        """Move to `split`: devices whose variant changes load it first (see module doc)."""
        self._target = split
        wanted = {r.device: r for weights in split.values() for r in weights}
        for device in self.devices:
            target = wanted.get(device)
            pending = self.loading.get(device)
            if pending is not None and pending[0] != target:
                pending[1].cancel()
                del self.loading[device]
            if target is None or target == self.loaded[device] or device in self.loading:
                continue
            done = functools.partial(self._finish_load, device, target)
            timer = self.clock.call_at(self.clock.now() + self.settings.load_time_s, done)
            self.loading[device] = (target, timer)
        self._publish()

    def _finish_load(self, device: str, replica: Replica) -> None:
        del self.loading[device]
        self._switch(device, replica)
        self._publish()

    def _switch(self, device: str, replica: Replica) -> None:
        old = self.loaded[device]
        runner = self.runners[device]
        variant = self.variants[replica.key]
        device_type = self.devices[device].device_type
        points = dict(variant.latency_s[device_type])
        executor = self.executors[device]
        sigma = self.spread.get((*variant.key, device_type), 0.0)
        executor.add_variant(replica.key, LatencyProfile(points), sigma)
        queue = runner.replicas.get(replica.key)
        if queue is not None:  # switching back to a variant still draining: keep its queue
            queue.draining = False
        else:
            profile = LatencyProfile(points)
            self.profiles[replica] = profile
            runner.add_replica(
                ReplicaQueue(
                    key=replica.key,
                    policy=make_policy(self.settings.batching, self.settings.max_batch_size),
                    profile=profile,
                    max_batch_size=self.settings.max_batch_size,
                    max_queue_size=self.settings.max_queue_size,
                )
            )
        self.loaded[device] = replica
        self.num_loads += 1
        if old is not None and old != replica:
            runner.drain(old.key)

    def _publish(self) -> None:
        """Route by the target split over what is loaded; a device still loading its new
        variant keeps serving its old one at the old weight."""
        split: Split = {}
        for device, replica in self.loaded.items():
            if replica is None:
                continue
            weight = self._target.get(replica.family, {}).get(replica)
            if weight is None and device in self.loading:
                weight = self._weights.get(replica)
            if weight:
                split.setdefault(replica.family, {})[replica] = weight
        self._weights = {r: w for weights in split.values() for r, w in weights.items()}
        replicas = frozenset(r for r in self.loaded.values() if r is not None)
        self.router.set_plan(Plan(replicas, split))

    def assignment(self) -> dict[str, tuple[str, str] | None]:
        """Which (family, variant) each device serves now."""
        return {d: (r.family, r.variant) if r else None for d, r in self.loaded.items()}
