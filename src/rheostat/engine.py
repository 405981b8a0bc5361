"""The live engine: workers, device runners, router and plan wired on the asyncio loop.

`Engine.infer` is the data plane after decoding: admission (deadline, accuracy floor), routing
per the plan, queueing on a device, and waiting for exactly one outcome per item. The API
layer turns HTTP into `infer` calls and outcomes into responses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from rheostat.admission import Admission, RequestOptions
from rheostat.apps import AppPolicy
from rheostat.backends.onnx import LoadSpec, load_spec
from rheostat.batching import make_policy
from rheostat.clock import WallClock
from rheostat.config import ServerConfig
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.power import PowerModel, RaplMeter, default_power, share_of_package
from rheostat.devices.runner import DeviceRunner, ReplicaQueue
from rheostat.devices.work import ItemResult, Outcome, Payload
from rheostat.errors import (
    DeadlineError,
    ModelNotFoundError,
    NotReadyError,
    RequestError,
)
from rheostat.monitoring.record import RequestMonitor, RequestRecord, RequestStatus
from rheostat.plan import Plan, Replica, default_plan
from rheostat.planning.problem import BATCH_BUDGET_FRACTION, best_throughput
from rheostat.profiler import batch_sizes_for, read_profile
from rheostat.profiling import LatencyProfile
from rheostat.repository.loader import Family, Repository, load_family
from rheostat.routing import Constraints, Router
from rheostat.stats import StatsBook
from rheostat.workers.handle import Worker, WorkerHandle

__all__ = ["Engine", "EngineState", "InferOutcome", "RequestObserver", "RequestOptions"]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
DISCOVERY_INTERVAL_S = 2.0
"""How often a cluster's node table is read for devices that joined (see `discover`)."""
DeviceListener = Callable[[tuple[Device, ...], str], None]
"""Told the devices left serving, and why, when one is lost or comes back."""


class RequestObserver(Protocol):
    def arrived(self, family: str, num_items: int, now_s: float) -> None: ...

    def answered(self, family: str, num_items: int, late: bool) -> None: ...


class EngineState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass(frozen=True)
class InferOutcome:
    family: str
    variant: str
    version: int
    accuracy: float
    results: tuple[ItemResult, ...]
    arrival_s: float
    deadline_s: float

    @property
    def energy_j(self) -> float:
        """The request's energy: its items' shares of their batches' device energy."""
        return sum(r.energy_j for r in self.results)


class Engine:
    def __init__(self, repository: Repository, config: ServerConfig) -> None:
        self.repository = repository
        self.config = config
        self.clock = WallClock()
        self.state = EngineState.LOADING
        self.plan = default_plan(repository, config.devices)
        self.power: dict[str, PowerModel] = {}  # device name -> its power model
        self.energy: dict[Replica, float] = {}  # joules of one inference run alone
        self.router = Router(self.plan, self._accuracies(), energy=self.energy)
        self.workers: dict[str, Worker] = {}
        self.lost_devices: set[str] = set()  # remote devices whose worker is gone
        self.device_listeners: list[DeviceListener] = []  # e.g. the control plane
        self.policy_listeners: list[Callable[[str], None]] = []  # told why app policies changed
        # on a cluster: the devices it has now (blocking; run off the loop); new ones join
        self.discover: Callable[[], Sequence[Device]] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.runners: dict[str, DeviceRunner] = {}
        self.profiles: dict[Replica, LatencyProfile] = {}
        self.tail_profiles: dict[Replica, dict[int, float]] = {}  # p99 from stored profiles
        # as measured at load: the planner's view (the live profiles follow the batches that
        # run, and a variant the plan stopped using would keep whatever it last saw)
        self.base_profiles: dict[Replica, dict[int, float]] = {}
        self.loaded_versions: dict[str, int] = {}  # family.variant -> version
        self.stats = StatsBook()
        self.observers: list[RequestObserver] = []  # e.g. the control plane's demand estimate
        self.monitors: list[RequestMonitor] = []  # metrics and the web page's series
        self.admission = Admission(self.clock, self.router, self.runners, self.profiles, self.stats)
        self.router.balance = self._expected_finish_s
        self._load_lock = asyncio.Lock()  # one repository load at a time

    def _accuracies(self) -> dict[str, float]:
        return {
            f"{f.name}.{v.name}": v.accuracy
            for f in self.repository.families.values()
            for v in f.config.variants.values()
        }

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, progress: Progress | None = None) -> None:
        say = progress or (lambda message: None)
        try:
            await asyncio.gather(*(self._start_device(d, say) for d in self.config.devices))
        except BaseException:
            self.state = EngineState.FAILED
            raise
        self.state = EngineState.READY
        say("ready")
        if self.discover is not None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_devices(say))

    async def _start_device(self, device: Device, say: Progress) -> None:
        worker = self._make_worker(device)
        runner = DeviceRunner(device, self.clock, worker, self.admission.retry)
        worker.on_ready = runner.schedule
        runner.on_batch = self._on_batch
        self.workers[device.name] = worker
        self.runners[device.name] = runner
        say(f"starting worker for {device.name}")
        await worker.start()
        runner.power = self.power[device.name] = self._power(device)
        measure = (
            self.power[device.name].source == "estimate"
            and not device.remote
            and device.kind is DeviceKind.CPU  # RAPL counts CPU packages, not GPUs
        )
        meter = RaplMeter() if measure else None
        before = meter.read_uj() if meter is not None and meter.readable else None
        started = self.clock.now()
        profiled = [await self._load_replica(r, say) for r in self.plan.on_device(device.name)]
        busy = bool(profiled) and all(profiled)  # stored profiles leave the device idle
        if busy and meter is not None and before is not None and (after := meter.read_uj()):
            # loading is mostly profiling, which keeps the device busy: its share of the
            # packages' power over that time is its active power
            watts = meter.joules_between(before, after) / max(self.clock.now() - started, 1e-3)
            active = watts * share_of_package(device)
            if active > 0:
                idle = min(self.power[device.name].idle_w, active)
                runner.power = self.power[device.name] = PowerModel(idle, active, "rapl")
                say(f"  {device.name}: {active:.1f} W active (RAPL)")
                self._energies(device.name)

    def _power(self, device: Device) -> PowerModel:
        return self.config.power.get(device.device_type) or default_power(device)

    def _energies(self, device: str) -> None:
        """Joules of one inference alone on each replica of `device`: batch-1 latency at the
        device's active power (the most an inference costs; batching spreads it)."""
        power = self.power.get(device)
        for replica, profile in self.profiles.items():
            if replica.device == device and power is not None:
                self.energy[replica] = power.active_w * profile.latency_s(1)

    def _make_worker(self, device: Device) -> Worker:
        if device.remote:
            from rheostat.distributed.handle import RayWorkerHandle

            return RayWorkerHandle(
                device,
                on_lost=self.device_lost,
                on_back=self.device_back,
                wanted=lambda: self._wanted_specs(device),
            )
        return WorkerHandle(device)

    @property
    def live_devices(self) -> tuple[Device, ...]:
        return tuple(d for d in self.config.devices if d.name not in self.lost_devices)

    def device_lost(self, name: str, why: str) -> None:
        """A remote device's worker or node is gone: route around it at once (its replicas
        leave the plan; a family it alone served falls back to its best variant left),
        send what it had queued elsewhere, and tell the listeners (the planner re-plans
        on the devices left)."""
        if name in self.lost_devices:
            return
        self.lost_devices.add(name)
        replicas = frozenset(r for r in self.plan.replicas if r.device != name)
        split: dict[str, dict[Replica, float]] = {}
        for family, weights in self.plan.split.items():
            kept = {r: w for r, w in weights.items() if r.device != name}
            if not kept:
                kept = self._best_left(family, replicas)
            if kept:
                split[family] = kept
        self.plan = Plan(replicas, split)
        self.router.set_plan(self.plan)
        self.runners[name].evacuate()
        for listener in self.device_listeners:
            listener(self.live_devices, f"device {name} lost")

    def device_back(self, name: str, what: str = "back") -> None:
        """A lost device serves again: its worker restarted with the variants the engine
        serves now (`_wanted_specs`). With a planner, the re-plan gives it traffic; without
        one, it gets its static share back."""
        if name not in self.lost_devices:
            return
        self.lost_devices.discard(name)
        static = default_plan(self.repository, [self._device(name)])
        back = {r for r in static.replicas if r in self.profiles}
        split = {f: dict(w) for f, w in self.plan.split.items()}
        if not self.device_listeners:
            for family, weights in static.split.items():
                split.setdefault(family, {}).update({r: w for r, w in weights.items() if r in back})
        self.plan = Plan(self.plan.replicas | back, split)
        self.router.set_plan(self.plan)
        for listener in self.device_listeners:
            listener(self.live_devices, f"device {name} {what}")

    def _wanted_specs(self, device: Device) -> list[LoadSpec]:
        """What a restarted worker of `device` must open: the served version of each variant
        loaded (and profiled) for it, as of now."""
        static = default_plan(self.repository, [device])
        return [self._spec(r)[0] for r in sorted(static.replicas) if r in self.profiles]

    def _best_left(self, family: str, replicas: frozenset[Replica]) -> dict[Replica, float]:
        """A family's fallback split: its most accurate variant among `replicas`."""
        left = [r for r in replicas if r.family == family]
        if not left:
            return {}
        top = max(self.router.accuracy.get(r.key, 0.0) for r in left)
        return {r: 1.0 for r in left if self.router.accuracy.get(r.key, 0.0) == top}

    async def _load_replica(self, replica: Replica, say: Progress) -> bool:
        """Load and profile (or read the stored profile of) `replica`; True if profiled."""
        family = self.repository.families[replica.family]
        spec, version = self._spec(replica)
        say(f"loading {replica.key} v{version} on {replica.device}")
        worker = self.workers[replica.device]
        await worker.load(spec)
        device_type = self._device(replica.device).device_type
        stored = read_profile(family, replica.variant, device_type)
        if stored is not None:  # measured by `rheostat profile`
            say(f"  {replica.key}: stored {device_type} profile")
            points = {int(b): d["p50_s"] for b, d in stored["batch"].items()}
            self.tail_profiles[replica] = {int(b): d["p99_s"] for b, d in stored["batch"].items()}
        else:
            sizes = batch_sizes_for(family.config.max_batch_size)
            points = await worker.profile(replica.key, sizes, self.config.profile_repeats)
        worst = await self._worst_profile(replica)
        profile = LatencyProfile(points)
        self.profiles[replica] = profile
        self.base_profiles[replica] = dict(points)
        self._energies(replica.device)
        self.loaded_versions[replica.key] = version
        batching = family.config.dynamic_batching
        self.runners[replica.device].add_replica(
            ReplicaQueue(
                key=replica.key,
                policy=make_policy(batching, family.config.max_batch_size),
                profile=profile,
                max_batch_size=family.config.max_batch_size,
                max_queue_size=batching.default_queue_policy.max_queue_size,
                worst=worst,
            )
        )
        return stored is None

    def set_app(self, policy: AppPolicy | None, name: str = "") -> None:
        """Add, change (`policy`) or remove (`name`, no policy) an app's policy while serving:
        requests read it as they arrive, plans at the next re-plan."""
        apps = dict(self.config.apps)
        if policy is None:
            apps.pop(name, None)
        else:
            apps[policy.name] = policy
        self.config = dataclasses.replace(self.config, apps=apps)
        log.info("app policies now: %s", sorted(apps))
        for listener in self.policy_listeners:
            listener(f"app {policy.name if policy else name} {'changed' if policy else 'removed'}")

    def energy_budget(self, family: str) -> float:
        """The tightest energy budget of the apps bound to `family` (math.inf: none): the
        planner keeps the family's variants within it. Apps not bound to one family have
        their budget enforced per request by routing only."""
        budgets = [
            a.max_energy_j
            for a in self.config.apps.values()
            if a.family == family and a.max_energy_j is not None
        ]
        return min(budgets, default=math.inf)

    async def _worst_profile(self, replica: Replica) -> LatencyProfile | None:
        """A staged variant's latency with every row through every stage (None: not staged)."""
        family = self.repository.families[replica.family]
        if not family.config.variants[replica.variant].stages:
            return None
        points = await self.workers[replica.device].profile(
            replica.key, batch_sizes_for(family.config.max_batch_size),
            self.config.profile_repeats, worst=True,
        )  # fmt: skip
        return LatencyProfile(points)

    def _expected_finish_s(self, replica: Replica) -> float:
        """When a request queued on `replica` now would finish (the router's load view)."""
        runner = self.runners.get(replica.device)
        if runner is None or replica.key not in runner.replicas:
            return math.inf
        return runner.expected_finish_s(replica.key)

    def capacity_rps(self, family: str) -> float:
        """What the current plan can carry for `family`: per replica in its split, the best
        `b / latency(b)` of the load-time profile whose latency fits half the SLO."""
        fam = self.repository.families.get(family)
        if fam is None:
            return 0.0
        budget_s = fam.config.slo_ms / 1e3 * BATCH_BUDGET_FRACTION
        return sum(
            best_throughput(self.base_profiles.get(replica, {}), budget_s).rps
            for replica in self.plan.split.get(family, {})
        )

    def _on_batch(self, key: str, size: int, compute_s: float) -> None:
        self.stats.record_batch(key, size, compute_s)
        for monitor in self.monitors:
            monitor.batch(key, size, compute_s)

    def _device(self, name: str) -> Device:
        return next(d for d in self.config.devices if d.name == name)

    async def stop(self) -> None:
        self.state = EngineState.STOPPING
        if self._watch is not None:
            self._watch.cancel()
        await asyncio.gather(*(w.stop() for w in self.workers.values()))

    async def _watch_devices(self, say: Progress) -> None:
        """Add the devices of nodes that join the cluster while serving."""
        assert self.discover is not None
        discover = self.discover
        loop = asyncio.get_running_loop()
        while self.state is EngineState.READY:
            await self.clock.sleep(DISCOVERY_INTERVAL_S)
            try:
                found = await loop.run_in_executor(None, discover)
            except Exception as exc:  # the cluster's control store is busy or gone: retry
                log.warning("device discovery failed: %s", exc)
                continue
            known = {d.name for d in self.config.devices}
            for device in found:
                if device.name in known:
                    continue
                try:
                    await self.add_device(device, say)
                except Exception as exc:
                    log.warning("device %s could not join: %s", device.name, exc)

    async def add_device(self, device: Device, say: Progress) -> None:
        """A new device: start its worker, load and profile every variant it may run, then
        route to it (re-planned in, or its static share without a planner)."""
        say(f"device {device.name} ({device.device_type}) joined")
        self.config = dataclasses.replace(self.config, devices=(*self.config.devices, device))
        self.lost_devices.add(device.name)  # not serving until its variants are loaded
        await self._start_device(device, say)
        for replica in sorted(default_plan(self.repository, [device]).replicas):
            await self._load_replica(replica, say)
        self.device_back(device.name, "joined")

    # -- model control (repository extension) -----------------------------------------------
    def resolve(self, name: str) -> tuple[Family, str | None]:
        """`family` or `family.variant` -> (family, variant or None); 404 if unknown."""
        family_name, _, variant = name.partition(".")
        family = self.repository.families.get(family_name)
        if family is None or (variant and variant not in family.config.variants):
            known = sorted(
                [*self.repository.families]
                + [f"{f}.{v}" for f, fam in self.repository.families.items() for v in fam.versions]
            )
            raise ModelNotFoundError(f"unknown model {name!r}; known models: {known}")
        return family, variant or None

    def is_ready(self, family: str, variant: str | None) -> bool:
        if self.state is not EngineState.READY:
            return False
        replicas = self.plan.of_family(family)
        return any(variant in (None, r.variant) for r in replicas)

    async def unload(self, name: str) -> None:
        family, variant = self.resolve(name)
        doomed = {r for r in self.plan.of_family(family.name) if variant in (None, r.variant)}
        self._set_plan(self.plan.replicas - doomed)
        for replica in doomed:
            self.runners[replica.device].drain(replica.key)
        while any(r.key in self.runners[r.device].replicas for r in doomed):
            await self.clock.sleep(0.01)
        for replica in doomed:
            self.profiles.pop(replica, None)
            self.energy.pop(replica, None)
            self.loaded_versions.pop(replica.key, None)
            if replica.device not in self.lost_devices:  # a restart opens only what is wanted
                await self.workers[replica.device].unload(replica.key)

    async def load(self, name: str) -> None:
        """(Re)load a family or variant from disk, picking up new versions.

        Variants already loaded are swapped in place, with no request failed: each worker
        opens the new version's session and replaces the old one between two batches, and
        the replica's queue and split stay as they are. Its profile is the new version's
        stored one where `rheostat profile` or a registration measured it, and otherwise
        the old one, corrected by every batch that runs (profiling here would hold the
        device while requests wait). Variants the new config drops are drained and
        unloaded; new ones are loaded, then routed to. Loads run one at a time; if a worker
        cannot open a new version, the replicas already swapped go back to what they served
        and the error is raised.
        """
        async with self._load_lock:
            family, variant = self.resolve(name)
            fresh = load_family(family.path)
            before = {r for r in self.plan.of_family(family.name) if variant in (None, r.variant)}
            gone = {r.variant for r in before} - set(fresh.config.variants)
            old_repository = self.repository
            self.repository = Repository(
                self.repository.path, {**self.repository.families, fresh.name: fresh}
            )
            swapped: list[Replica] = []
            try:
                for replica in sorted(r for r in before if r.variant not in gone):
                    await self._swap_replica(replica)
                    swapped.append(replica)
            except BaseException:
                self.repository = old_repository
                for replica in swapped:
                    await self._swap_replica(replica)
                self.router.accuracy = self._accuracies()
                raise
            for old in sorted(gone):
                await self.unload(f"{family.name}.{old}")
            self.router.accuracy = self._accuracies()
            wanted = default_plan(self.repository, self.live_devices)
            added = {
                r for r in wanted.of_family(fresh.name)
                if variant in (None, r.variant) and r not in before
            }  # fmt: skip
            for replica in sorted(added):
                await self._load_replica(replica, lambda message: None)
            if added:
                self._set_plan(self.plan.replicas | added)

    async def _swap_replica(self, replica: Replica) -> None:
        """Open the served version of `replica` in its worker in place of the old session;
        from then on its answers carry the new version and accuracy, and its profile is the
        new version's stored one, if it has one."""
        spec, version = self._spec(replica)
        if replica.device not in self.lost_devices:  # a restart opens the served version
            await self.workers[replica.device].load(spec)
        changed = version != self.loaded_versions.get(replica.key)
        self.loaded_versions[replica.key] = version
        family = self.repository.families[replica.family]
        self.router.accuracy[replica.key] = family.config.variants[replica.variant].accuracy
        stored = read_profile(family, replica.variant, self._device(replica.device).device_type)
        if changed and stored is not None and replica in self.profiles:
            points = {int(b): d["p50_s"] for b, d in stored["batch"].items()}
            self.tail_profiles[replica] = {int(b): d["p99_s"] for b, d in stored["batch"].items()}
            self.base_profiles[replica] = dict(points)
            self.profiles[replica].reset(points)
            self._energies(replica.device)

    def _spec(self, replica: Replica) -> tuple[LoadSpec, int]:
        """What a worker needs to open the served version of `replica`."""
        family = self.repository.families[replica.family]
        version = family.served_version(replica.variant)
        return load_spec(family, replica.variant, version), version

    def set_split(self, split: dict[str, dict[Replica, float]]) -> None:
        """Switch families' traffic to a new split over loaded replicas (others keep theirs).

        Every variant stays loaded on every device it may run on, so a switch takes effect
        at once and requests already queued finish where they are: nothing is dropped.
        """
        merged = {f: dict(w) for f, w in self.plan.split.items()}
        for family, weights in split.items():
            present = {r: w for r, w in weights.items() if r in self.plan.replicas and w > 0}
            if present:
                merged[family] = present
        self.plan = Plan(self.plan.replicas, merged)
        self.router.set_plan(self.plan)

    def _set_plan(self, replicas: frozenset[Replica]) -> None:
        wanted = default_plan(self.repository, self.live_devices)
        split = {}
        for fam, weights in wanted.split.items():
            present = {r: w for r, w in weights.items() if r in replicas}
            if not present:  # the best variant is unloaded: split over the best one left
                present = self._best_left(fam, replicas)
            if present:
                split[fam] = present
        self.plan = Plan(replicas, split)
        self.router.set_plan(self.plan)

    # -- data plane -------------------------------------------------------------------------
    async def infer(
        self,
        family: Family,
        variant: str | None,
        payloads: Sequence[Payload],
        options: RequestOptions,
    ) -> InferOutcome:
        if not self.monitors:
            return await self._infer(family, variant, payloads, options)
        arrival = self.clock.now()
        try:
            outcome = await self._infer(family, variant, payloads, options)
        except RequestError as error:
            self._report(self._refused(family.name, len(payloads), arrival, error))
            raise
        self._report(self._served(family.name, len(payloads), arrival, outcome))
        return outcome

    def report_error(self, family: str, error: RequestError) -> None:
        """A request for `family` refused before it reached the engine (bad input)."""
        if self.monitors:
            self._report(self._refused(family, 1, self.clock.now(), error))

    def _report(self, record: RequestRecord) -> None:
        for monitor in self.monitors:
            monitor.finished(record)

    def _served(
        self, family: str, num_items: int, arrival_s: float, outcome: InferOutcome
    ) -> RequestRecord:
        results = outcome.results
        late = any(r.finished_s > outcome.deadline_s for r in results)
        return RequestRecord(
            family, f"{outcome.family}.{outcome.variant}", num_items,
            RequestStatus.LATE if late else RequestStatus.ON_TIME, arrival_s,
            self.clock.now() - arrival_s, sum(r.queue_s for r in results) / len(results),
            sum(r.compute_s for r in results) / len(results), outcome.accuracy,
            energy_j=outcome.energy_j,
        )  # fmt: skip

    def _refused(
        self, family: str, num_items: int, arrival_s: float, error: RequestError
    ) -> RequestRecord:
        status = {429: RequestStatus.SHED, 504: RequestStatus.DROPPED}.get(
            error.http_status, RequestStatus.FAILED
        )
        return RequestRecord(
            family, "", num_items, status, arrival_s, self.clock.now() - arrival_s,
            status_code=error.http_status,
        )  # fmt: skip

    async def _infer(
        self,
        family: Family,
        variant: str | None,
        payloads: Sequence[Payload],
        options: RequestOptions,
    ) -> InferOutcome:
        if self.state is not EngineState.READY:
            raise NotReadyError(f"server is {self.state.value}, not ready")
        now = self.clock.now()
        timeout = (
            family.config.default_timeout_s if options.timeout_s is None else options.timeout_s
        )
        deadline = now + timeout
        for observer in self.observers:
            observer.arrived(family.name, len(payloads), now)
        constraints = Constraints(
            variant=variant,
            min_accuracy=options.min_accuracy,
            max_energy_j=options.max_energy_j,
            prefer=options.prefer,
        )
        candidates = self.admission.candidates(family.name, constraints, now, deadline)
        futures = [self.clock.loop.create_future() for _ in payloads]
        settle = [functools.partial(_settle, future) for future in futures]
        self.admission.admit(family.name, candidates, payloads, settle, options, now, deadline)
        outcomes: list[Outcome] = list(await asyncio.gather(*futures))
        late = any(
            isinstance(o, DeadlineError) or (isinstance(o, ItemResult) and o.finished_s > deadline)
            for o in outcomes
        )
        for observer in self.observers:
            observer.answered(family.name, len(payloads), late)
        for outcome in outcomes:
            if isinstance(outcome, RequestError):
                self.stats.record_failure(candidates[0].key, self.clock.now() - now)
                raise outcome
        results = tuple(o for o in outcomes if isinstance(o, ItemResult))
        key = results[0].variant
        self.stats.record_success(key, self.clock.now() - now, results)
        family_name, _, served = key.partition(".")
        return InferOutcome(
            family=family_name,
            variant=served,
            version=self.loaded_versions.get(key, 0),
            accuracy=self.router.accuracy.get(key, 0.0),
            results=results,
            arrival_s=now,
            deadline_s=deadline,
        )


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)
