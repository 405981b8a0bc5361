"""The front end's side of a device worker on a Ray node.

`RayWorkerHandle` is to a `DeviceActor` what `WorkerHandle` is to a local worker process:
the device's `Executor`, with the same calls (start, load, profile, execute, stop). The
actor is placed on its device's node (hard node affinity, the device's CPUs and GPUs
reserved), so the plan's device is the machine that computes. A batch is one actor call;
its answer comes back on the event loop through the call's future, so the loop never blocks
on Ray.

When a call fails because the actor or its node is gone, the batch comes back `lost` (the
device runner retries its items once, elsewhere) and the handle reports the device lost
once, so the engine takes it out of the plan and the planner re-plans on what is left. It
then keeps trying to bring the worker back: whenever the node is alive it starts a new actor
there and loads the same variants, and reports the device back.
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

__all__ = ["RayWorkerHandle", "WorkerLostError"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
"""How long an actor may take to start on its node (a fresh Ray worker process, imports)."""
RECOVERY_POLL_S = 2.0


class WorkerLostError(RuntimeError):
    """The device's actor or node is gone."""


class ModelStore:
    """Model files put into Ray's object store once per file version, shared by handles."""

    def __init__(self) -> None:
        self._refs: dict[tuple[Path, int, int], Any] = {}

    def ref(self, path: Path) -> Any:
        import ray

        stat = path.stat()
        key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
        if key not in self._refs:
            self._refs[key] = ray.put(path.read_bytes())
        return self._refs[key]


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


class RayWorkerHandle:
    def __init__(
        self,
        device: Device,
        on_ready: Callable[[], None] | None = None,
        on_lost: Callable[[str, str], None] | None = None,
        on_back: Callable[[str], None] | None = None,
    ) -> None:
        if device.node_id is None:
            raise ValueError(f"device {device.name!r} is not on a Ray node")
        self.device = device
        self.node_id: str = device.node_id
        self.on_ready = on_ready
        self.on_lost = on_lost  # (device name, why) once per loss
        self.on_back = on_back  # (device name) when a lost device serves again
        self.num_restarts = 0
        self.pid: int | None = None
        self.worker_node_id: str | None = None  # where Ray placed the actor, as it reports
        self._actor: Any = None
        self._specs: dict[str, LoadSpec] = {}
        self._ready = False
        self._stopping = False
        self._recovery: asyncio.Task[None] | None = None

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
            for spec in self._specs.values():
                await _wait(actor.load.remote(spec, MODELS.ref(spec.model_path)))
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
        await self._call("load", spec, MODELS.ref(spec.model_path))
        self._specs[spec.key] = spec

    async def unload(self, key: str) -> None:
        self._specs.pop(key, None)
        await self._call("unload", key)

    async def profile(self, key: str, batch_sizes: list[int], repeats: int) -> dict[int, float]:
        points: dict[int, float] = await self._call("profile", key, batch_sizes, repeats)
        return points

    def execute(self, batch: Batch, on_done: Callable[[BatchResult], None]) -> None:
        if self._actor is None:
            on_done(BatchResult(lost=True))
            return
        loop = asyncio.get_running_loop()
        future: Future[Any] = self._actor.run.remote(batch.variant_key, batch.payloads).future()

        def finished(done: Future[Any]) -> None:
            exc = done.exception()
            if exc is None:
                on_done(done.result())
            elif _is_loss(exc):
                self._lost(_message(exc))
                on_done(BatchResult(lost=True))
            else:
                on_done(BatchResult(error=_message(exc)))

        future.add_done_callback(lambda done: loop.call_soon_threadsafe(finished, done))

    # -- loss and recovery ------------------------------------------------------------------
    def _lost(self, why: str) -> None:
        if not self._ready or self._stopping:
            return
        self._ready = False
        self._actor = None
        log.warning("device %s lost: %s", self.device.name, why)
        if self.on_lost is not None:
            self.on_lost(self.device.name, why)
        self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        """Start a new actor once the node is alive again, with the same variants loaded."""
        clock = WallClock()
        while not self._stopping:
            await clock.sleep(RECOVERY_POLL_S)
            if not await asyncio.get_running_loop().run_in_executor(None, self._node_alive):
                continue
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

    def _node_alive(self) -> bool:
        import ray

        nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        return any(n["NodeID"] == self.node_id and n["Alive"] for n in nodes)


async def _wait(ref: Any) -> Any:
    """Await a Ray object ref on the running loop (through its concurrent future)."""
    return await asyncio.wrap_future(ref.future())
