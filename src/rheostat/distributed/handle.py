"""The front end's side of a device worker on a Ray node.

`RayWorkerHandle` is to a `DeviceActor` what `WorkerHandle` is to a local worker process:
the device's `Executor`, with the same calls (start, load, profile, execute, stop). The
actor is placed on its device's node (hard node affinity, the device's CPUs and GPUs
reserved), so the plan's device is the machine that computes. A batch is one actor call;
its answer comes back on the event loop through the call's future, so the loop never blocks
on Ray.

When a call fails because the actor or its node is gone, or a batch goes unanswered far
longer than its variant ever took (the watchdog), the batch comes back `lost` (the device
runner retries its items once, elsewhere) and the handle reports the device lost
once, so the engine takes it out of the plan and the planner re-plans on what is left. If
the node is still alive (only the actor died), the handle starts a new actor there, loads
the variants the engine serves on the device now, and reports the device back; it retries
with a growing back-off, and gives up once Ray lists the node as dead (Ray never revives a
dead node: a restarted machine joins as a new node).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from rheostat.backends.onnx import LoadSpec
from rheostat.clock import WallClock
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.work import Batch, BatchResult
from rheostat.distributed import node_alive

__all__ = ["RayWorkerHandle", "WorkerLostError"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
"""How long an actor may take to start on its node (a fresh Ray worker process, imports)."""
RECOVERY_FIRST_S = 1.0
RECOVERY_MAX_S = 30.0
WATCHDOG_FLOOR_S = 5.0
WATCHDOG_FACTOR = 20.0
"""A batch that takes longer than WATCHDOG_FACTOR x the slowest batch of its variant seen so
far (and at least WATCHDOG_FLOOR_S) means an unresponsive worker (a frozen process, a node
cut off the network): Ray only notices those after its own health checks, tens of seconds
later, so the handle declares the device lost itself."""


class WorkerLostError(RuntimeError):
    """The device's actor or node is gone."""


class ModelStore:
    """Model files put into Ray's object store once per file version, shared by handles; a
    newer version of a file replaces the older one (Ray frees it once no call holds it)."""

    def __init__(self) -> None:
        self._refs: dict[Path, tuple[tuple[int, int], Any]] = {}

    def ref(self, path: Path) -> Any:
        """Blocking (reads the file): call it off the event loop."""
        import ray

        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        held = self._refs.get(path.resolve())
        if held is None or held[0] != version:
            held = (version, ray.put(path.read_bytes()))
            self._refs[path.resolve()] = held
        return held[1]


MODELS = ModelStore()


def _is_loss(exc: BaseException) -> bool:
    """Whether `exc` means the actor or its node is gone (not an error of the call)."""
    from ray import exceptions

    return isinstance(
        exc,
        exceptions.RayActorError
        | exceptions.ObjectLostError
        | exceptions.NodeDiedError
        | exceptions.WorkerCrashedError,
    )


def _message(exc: BaseException) -> str:
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and exc.cause is not None:
        return f"{type(exc.cause).__name__}: {exc.cause}"
    return f"{type(exc).__name__}: {exc}"


async def _models(spec: LoadSpec) -> list[Any]:
    """Object refs of every model file of `spec` (a staged variant has one per stage)."""
    loop = asyncio.get_running_loop()
    return [await loop.run_in_executor(None, MODELS.ref, path) for path in spec.files]


class RayWorkerHandle:
    def __init__(
        self,
        device: Device,
        on_ready: Callable[[], None] | None = None,
        on_lost: Callable[[str, str], None] | None = None,
        on_back: Callable[[str], None] | None = None,
        wanted: Callable[[], list[LoadSpec]] | None = None,
    ) -> None:
        if device.node_id is None:
            raise ValueError(f"device {device.name!r} is not on a Ray node")
        self.device = device
        self.node_id: str = device.node_id
        self.on_ready = on_ready
        self.on_lost = on_lost  # (device name, why) once per loss
        self.on_back = on_back  # (device name) when a lost device serves again
        # what a restarted actor loads: the engine's current versions for this device
        # (what was loaded before may have been swapped or unloaded meanwhile)
        self.wanted = wanted
        self.num_restarts = 0
        self.pid: int | None = None
        self.worker_node_id: str | None = None  # where Ray placed the actor, as it reports
        self._actor: Any = None
        self._specs: dict[str, LoadSpec] = {}
        self._ready = False
        self._stopping = False
        self._recovery: asyncio.Task[None] | None = None
        self._slowest_s: dict[str, float] = {}  # per variant: its slowest answered batch
        self._clock = WallClock()

    @property
    def ready(self) -> bool:
        return self._ready

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from rheostat.distributed.actor import DeviceActor

        device = self.device
        gpu = device.kind is DeviceKind.GPU
        actor: Any = (
            ray.remote(DeviceActor)
            .options(
                num_cpus=0 if gpu else len(device.cores),
                num_gpus=1 if gpu else 0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(self.node_id, soft=False),
                max_restarts=0,
                max_concurrency=1,
            )
            .remote(device)
        )
        try:
            info = await asyncio.wait_for(_wait(actor.ready.remote()), START_TIMEOUT_S)
            if info["node_id"] != self.node_id:
                raise RuntimeError(
                    f"worker of {device.name} started on node {info['node_id']}, "
                    f"not on its node {self.node_id}"
                )
            if self.wanted is not None:
                self._specs = {spec.key: spec for spec in self.wanted()}
            for spec in self._specs.values():
                await _wait(actor.load.remote(spec, *(await _models(spec))))
        except BaseException:
            ray.kill(actor, no_restart=True)
            raise
        self._actor, self.pid = actor, int(info["pid"])
        self.worker_node_id = str(info["node_id"])
        self._ready = True

    async def stop(self) -> None:
        self._stopping = True
        self._ready = False
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        actor, self._actor = self._actor, None
        if actor is None:
            return
        import ray

        with contextlib.suppress(Exception):
            await asyncio.wait_for(_wait(actor.close.remote()), 5)
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)

    # -- calls ------------------------------------------------------------------------------
    async def _call(self, method: str, *args: Any) -> Any:
        if self._actor is None:
            raise WorkerLostError(f"worker of {self.device.name} is not running")
        try:
            return await _wait(getattr(self._actor, method).remote(*args))
        except Exception as exc:
            if _is_loss(exc):
                self._lost(_message(exc))
                raise WorkerLostError(f"worker of {self.device.name}: {_message(exc)}") from exc
            raise RuntimeError(_message(exc)) from exc

    async def load(self, spec: LoadSpec) -> None:
        await self._call("load", spec, *(await _models(spec)))
        self._specs[spec.key] = spec

    async def unload(self, key: str) -> None:
        self._specs.pop(key, None)
        await self._call("unload", key)

    async def profile(
        self, key: str, batch_sizes: list[int], repeats: int, worst: bool = False
    ) -> dict[int, float]:
        points: dict[int, float] = await self._call("profile", key, batch_sizes, repeats, worst)
        return points

    def watchdog_s(self, key: str) -> float:
        return max(WATCHDOG_FLOOR_S, WATCHDOG_FACTOR * self._slowest_s.get(key, 0.0))

    def execute(self, batch: Batch, on_done: Callable[[BatchResult], None]) -> None:
        if self._actor is None:
            on_done(BatchResult(lost=True))
            return
        loop = asyncio.get_running_loop()
        key = batch.variant_key
        sent_s = self._clock.now()
        future: Future[Any] = self._actor.run.remote(key, batch.payloads).future()
        answered = False

        def unresponsive() -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            waited = self._clock.now() - sent_s
            try:
                self._lost(f"batch {batch.batch_id} of {key} unanswered after {waited:.1f} s")
            finally:
                on_done(BatchResult(lost=True))

        watchdog = self._clock.call_at(sent_s + self.watchdog_s(key), unresponsive)

        def finished(done: Future[Any]) -> None:
            nonlocal answered
            if answered:  # the watchdog gave up on it already
                return
            answered = True
            watchdog.cancel()
            exc = done.exception()
            if exc is None:
                took = self._clock.now() - sent_s
                self._slowest_s[key] = max(self._slowest_s.get(key, 0.0), took)
                on_done(done.result())
            elif _is_loss(exc):
                try:
                    self._lost(_message(exc))
                finally:  # whatever the listeners did, the batch's requests get answers
                    on_done(BatchResult(lost=True))
            else:
                on_done(BatchResult(error=_message(exc)))

        def hand_over(done: Future[Any]) -> None:  # on a Ray thread
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed meanwhile: shutting down
                    loop.call_soon_threadsafe(finished, done)

        future.add_done_callback(hand_over)

    # -- loss and recovery ------------------------------------------------------------------
    def _lost(self, why: str) -> None:
        if not self._ready or self._stopping:
            return
        self._ready = False
        actor, self._actor = self._actor, None
        log.warning("device %s lost: %s", self.device.name, why)
        # Ray may call an actor "unavailable" that still runs: end it, so it does not hold
        # the node's CPUs against the actor that replaces it
        import ray

        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)
        self._recovery = asyncio.get_running_loop().create_task(self._recover())
        if self.on_lost is not None:
            self.on_lost(self.device.name, why)

    async def _recover(self) -> None:
        """While the node lives, start a new actor there (growing back-off between tries)."""
        clock = WallClock()
        wait_s = RECOVERY_FIRST_S
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await clock.sleep(wait_s)
            wait_s = min(2 * wait_s, RECOVERY_MAX_S)
            alive = await loop.run_in_executor(None, node_alive, self.node_id)
            if alive is False:
                log.warning("device %s: its Ray node is dead; not restarting", self.device.name)
                return
            try:
                await self.start()
            except Exception as exc:
                log.info("device %s not back yet: %s", self.device.name, _message(exc))
                continue
            self.num_restarts += 1
            log.warning("device %s is back", self.device.name)
            if self.on_back is not None:
                self.on_back(self.device.name)
            if self.on_ready is not None:
                self.on_ready()
            return


async def _wait(ref: Any) -> Any:
    """Await a Ray object ref on the running loop (through its concurrent future)."""
    return await asyncio.wrap_future(ref.future())
