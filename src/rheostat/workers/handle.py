"""The server's side of one device worker process, on the asyncio loop.

`WorkerHandle` is the live `Executor` of a device. It spawns the worker and talks to it over
a pipe through two small threads: a writer (pickling and sending a batch of several MB never
blocks the event loop, even while the worker is busy) and a reader (blocking `recv`, handing
each answer to the loop with `call_soon_threadsafe`). Reading or writing the pipe from the
loop itself is not safe: uvloop's `add_reader` makes the fd non-blocking, and a large message
then breaks off half-written and corrupts the stream. It watches the process sentinel:
when the worker dies, every call in flight is answered at once (a batch comes back `lost`, so
the device retries its items elsewhere or fails them clearly), and the worker is restarted
with the same variants loaded, with a growing back-off if it keeps dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from rheostat.backends.onnx import LoadSpec
from rheostat.clock import WallClock
from rheostat.devices.device import Device
from rheostat.devices.work import Batch, BatchResult
from rheostat.workers.process import worker_main

__all__ = ["Worker", "WorkerDiedError", "WorkerHandle"]

_Callback = Callable[[str, Any], None]


class Worker(Protocol):
    """What the engine needs of a device's worker: a local process (`WorkerHandle`) or an
    actor on a Ray node (`rheostat.distributed.handle.RayWorkerHandle`)."""

    on_ready: Callable[[], None] | None
    num_restarts: int

    @property
    def ready(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def load(self, spec: LoadSpec) -> None: ...

    async def unload(self, key: str) -> None: ...

    async def profile(
        self, key: str, batch_sizes: list[int], repeats: int, worst: bool = False
    ) -> dict[int, float]: ...

    def execute(self, batch: Batch, on_done: Callable[[BatchResult], None]) -> None: ...


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
        self._outbox: queue.SimpleQueue[Any] | None = None
        self._generation = 0
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
        self._loop = loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=worker_main, args=(child, self.device), name=f"rheostat-{self.device.name}"
        )
        process.daemon = True
        process.start()
        child.close()
        self._generation += 1
        generation = self._generation
        outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        writer = threading.Thread(target=_write_loop, args=(parent, outbox), daemon=True)
        reader = threading.Thread(
            target=self._read_loop, args=(parent, outbox, writer, generation), daemon=True
        )
        self._process, self._conn, self._outbox = process, parent, outbox
        started: asyncio.Future[Any] = loop.create_future()
        self._calls[0] = lambda status, value: _settle(started, status, value)
        writer.start()
        reader.start()
        loop.add_reader(process.sentinel, self._on_death, generation)
        await started
        for spec in self._specs.values():
            await self.call("load", spec)
        self._ready = True

    def _read_loop(
        self,
        conn: Connection,
        outbox: queue.SimpleQueue[Any],
        writer: threading.Thread,
        generation: int,
    ) -> None:
        """Reader thread: hand every answer to the loop; report the end of the pipe."""
        assert self._loop is not None
        loop = self._loop
        try:
            while True:
                message = conn.recv()
                loop.call_soon_threadsafe(self._dispatch, message)
        except (EOFError, OSError):
            pass
        except RuntimeError:  # the loop is closed: the server is gone
            return
        outbox.put(None)
        writer.join(5)
        conn.close()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_death, generation)

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
        if self._conn is None or self._outbox is None:
            callback("lost", f"worker of {self.device.name} is not running")
            return
        call_id = next(self._ids)
        self._calls[call_id] = callback
        self._outbox.put((op, call_id, args))

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

    async def profile(
        self, key: str, batch_sizes: list[int], repeats: int, worst: bool = False
    ) -> dict[int, float]:
        points: dict[int, float] = await self.call("profile", (key, batch_sizes, repeats, worst))
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
    def _dispatch(self, message: tuple[str, int, Any]) -> None:
        status, call_id, value = message
        callback = self._calls.pop(call_id, None)
        if callback is not None:
            callback(status, value)

    def _on_death(self, generation: int) -> None:
        """The process ended (sentinel) or its pipe closed; act once per process."""
        if generation != self._generation or self._conn is None or self._loop is None:
            return
        if self._process is not None:
            self._loop.remove_reader(self._process.sentinel)
            self._process.join(timeout=0)
        if self._outbox is not None:
            self._outbox.put(None)
        self._conn = None
        self._outbox = None
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


def _write_loop(conn: Connection, outbox: queue.SimpleQueue[Any]) -> None:
    """Writer thread: send queued calls in order until told to stop or the pipe breaks."""
    while (message := outbox.get()) is not None:
        try:
            conn.send(message)
        except OSError:
            return
