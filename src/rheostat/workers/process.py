"""The body of a device worker process: a loop over requests from the server.

Messages are `(op, call_id, args)` tuples over a `multiprocessing` pipe; every one is
answered `("ok", call_id, result)` or `("error", call_id, message)`, so the server can match
answers to calls and nothing waits forever. The process pins itself to its device's cores.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from rheostat.backends.onnx import LoadSpec, OnnxBackend
from rheostat.devices.device import Device, DeviceKind

__all__ = ["worker_main"]


def _load(backend: OnnxBackend, args: Any) -> None:
    spec: LoadSpec = args
    backend.load(spec)


def _profile(backend: OnnxBackend, args: Any) -> dict[int, float]:
    key, sizes, repeats, worst = args
    return backend.profile(key, sizes, repeats, worst=worst)


def _percentiles(backend: OnnxBackend, args: Any) -> dict[int, dict[str, float]]:
    key, sizes, repeats, warmup = args
    return backend.profile_percentiles(key, sizes, repeats, warmup)


_HANDLERS: dict[str, Callable[[OnnxBackend, Any], Any]] = {
    "percentiles": _percentiles,
    "load": _load,
    "unload": lambda backend, key: backend.unload(key),
    "run": lambda backend, args: backend.run(*args),
    "profile": _profile,
    "pid": lambda backend, args: os.getpid(),
}


def worker_main(conn: Connection, device: Device) -> None:
    """Serve calls until the pipe closes or a `stop` arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    if device.kind is DeviceKind.CPU:
        os.sched_setaffinity(0, device.cores)
    backend = OnnxBackend(device)
    conn.send(("ok", 0, os.getpid()))
    while True:
        try:
            op, call_id, args = conn.recv()
        except (EOFError, OSError):
            return
        if op == "stop":
            conn.send(("ok", call_id, None))
            return
        try:
            conn.send(("ok", call_id, _HANDLERS[op](backend, args)))
        except Exception as exc:  # answer every call, whatever went wrong
            conn.send(("error", call_id, f"{type(exc).__name__}: {exc}"))
