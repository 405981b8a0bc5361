"""The server's side of one device worker process, on the asyncio loop.

`WorkerHandle` is the live `Executor` of a device. It spawns the worker, sends calls over a
pipe, and reads answers with `loop.add_reader` (no threads). It watches the process sentinel:
when the worker dies, every call in flight is answered at once (a batch comes back `lost`, so
the device retries its items elsewhere or fails them clearly), and the worker is restarted
with the same variants loaded, with a growing back-off if it keeps dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from rheostat.backends.onnx import LoadSpec
from rheostat.clock import WallClock
from rheostat.devices.device import Device
from rheostat.devices.work import Batch, BatchResult
from rheostat.workers.process import worker_main

__all__ = ["WorkerDiedError", "WorkerHandle"]

_Callback = Callable[[str, Any], None]


class WorkerDiedError(RuntimeError):
    pass


class WorkerHandle:
    def __init__(self, device: Device, on_ready: Callable[[], None] | None = None) -> None:
        self.device = device
        self.on_ready = on_ready
        self.num_restarts = 0
        self._specs: dict[str, LoadSpec] = {}
        self._calls: dict[int, _Callback] = {}
        self._ids = itertools.count(1)
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restart_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=worker_main, args=(child, self.device), name=f"rheostat-{self.device.name}"
        )
        process.daemon = True
        process.start()
        child.close()
        self._process, self._conn = process, parent
        started: asyncio.Future[Any] = self._loop.create_future()
        self._calls[0] = lambda status, value: _settle(started, status, value)
        self._loop.add_reader(parent.fileno(), self._on_readable)
        self._loop.add_reader(process.sentinel, self._on_death)
        await started
        for spec in self._specs.values():
            await self.call("load", spec)
        self._ready = True

    async def stop(self) -> None:
        self._stopping = True
        self._ready = False
        if self._restart_task is not None:
            self._restart_task.cancel()
        process = self._process
        if process is None or not process.is_alive():
            return
        with contextlib.suppress(WorkerDiedError, TimeoutError):
            await asyncio.wait_for(self.call("stop", None), timeout=5)
        await asyncio.get_running_loop().run_in_executor(None, process.join, 5)
        if process.is_alive():
            process.kill()

    # -- calls ------------------------------------------------------------------------------
    def send(self, op: str, args: Any, callback: _Callback) -> None:
        if self._conn is None:
            callback("lost", f"worker of {self.device.name} is not running")
            return
        call_id = next(self._ids)
        self._calls[call_id] = callback
        try:
            self._conn.send((op, call_id, args))
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._calls.pop(call_id, None)
            callback("lost", f"worker of {self.device.name} is gone")

    async def call(self, op: str, args: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.send(op, args, lambda status, value: _settle(future, status, value))
        return await future

    async def load(self, spec: LoadSpec) -> None:
        await self.call("load", spec)
        self._specs[spec.key] = spec

    async def unload(self, key: str) -> None:
        self._specs.pop(key, None)
        await self.call("unload", key)

    async def profile(self, key: str, batch_sizes: list[int], repeats: int) -> dict[int, float]:
        points: dict[int, float] = await self.call("profile", (key, batch_sizes, repeats))
        return points

    def execute(self, batch: Batch, on_done: Callable[[BatchResult], None]) -> None:
        def answered(status: str, value: Any) -> None:
            if status == "ok":
                on_done(value)
            elif status == "lost":
                on_done(BatchResult(lost=True))
            else:
                on_done(BatchResult(error=str(value)))

        self.send("run", (batch.variant_key, batch.payloads), answered)

    # -- events -----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        conn = self._conn
        try:
            while conn is not None and conn.poll():
                status, call_id, value = conn.recv()
                callback = self._calls.pop(call_id, None)
                if callback is not None:
                    callback(status, value)
        except (EOFError, OSError):
            self._on_death()

    def _on_death(self) -> None:
        if self._conn is None or self._loop is None:
            return
        self._loop.remove_reader(self._conn.fileno())
        if self._process is not None:
            self._loop.remove_reader(self._process.sentinel)
            self._process.join(timeout=0)
        self._conn.close()
        self._conn = None
        self._ready = False
        calls, self._calls = self._calls, {}
        for callback in calls.values():
            callback("lost", f"worker of {self.device.name} died")
        if not self._stopping:
            self._restart_task = self._loop.create_task(self._restart())

    async def _restart(self) -> None:
        self.num_restarts += 1
        await WallClock().sleep(min(0.05 * 2 ** min(self.num_restarts, 7), 5.0))
        try:
            await self.start()
        except WorkerDiedError:
            return  # the death handler of the new process schedules the next try
        except Exception:
            if self._process is not None and self._process.is_alive():
                self._process.kill()  # e.g. a model failed to load: die and try again later
            return
        if self.on_ready is not None:
            self.on_ready()


def _settle(future: asyncio.Future[Any], status: str, value: Any) -> None:
    if future.done():
        return
    if status == "ok":
        future.set_result(value)
    elif status == "lost":
        future.set_exception(WorkerDiedError(str(value)))
    else:
        future.set_exception(RuntimeError(str(value)))
