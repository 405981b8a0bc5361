"""`rheostat profile`: measure every variant on every device and store it in the repository.

Each device gets a real worker process (the same code that serves), each variant is loaded
there and timed at every batch size on random input after a warm-up: p50/p95/p99 latency
and throughput, plus the memory the variant adds to the worker (RSS before/after loading).
Results go to `<family>/<variant>/<version>/profile.json`, keyed by device type, merged
with what other device types measured before. The server uses a stored profile instead of
its quick load-time timing, and the planner plans with its p99.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import psutil

from rheostat.backends.onnx import load_spec
from rheostat.clock import unix_time_s
from rheostat.devices.device import Device, DeviceKind
from rheostat.repository.loader import Family, Repository
from rheostat.workers.handle import WorkerHandle

__all__ = [
    "PROFILE_FILE",
    "batch_sizes_for",
    "local_device_types",
    "profile_repository",
    "profile_served_versions",
    "read_profile",
]

PROFILE_FILE = "profile.json"

Progress = Callable[[str, int], None]  # (message, steps done)


def batch_sizes_for(max_batch_size: int) -> list[int]:
    """Powers of two up to the family's max_batch_size, and max_batch_size itself."""
    sizes = [1]
    while sizes[-1] * 2 <= max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


def read_profile(family: Family, variant: str, device_type: str) -> dict[str, Any] | None:
    """The stored measurements of `variant` on `device_type`, or None."""
    path = family.model_path(variant).parent / PROFILE_FILE
    if not path.is_file():
        return None
    entry: dict[str, Any] | None = json.loads(path.read_text()).get(device_type)
    return entry


def _write(path: Path, device_type: str, entry: dict[str, Any]) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[device_type] = entry
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


async def _profile_variant(
    worker: WorkerHandle, family: Family, variant: str, repeats: int, warmup: int
) -> dict[str, Any]:
    key = f"{family.name}.{variant}"
    pid = worker.pid
    before = psutil.Process(pid).memory_info().rss if pid else 0
    spec = load_spec(family, variant)
    await worker.load(spec)
    after = psutil.Process(pid).memory_info().rss if pid else 0
    sizes = batch_sizes_for(family.config.max_batch_size)
    detail = await worker.call("percentiles", (key, sizes, repeats, warmup))
    await worker.unload(key)
    return {
        "batch": {str(b): d for b, d in detail.items()},
        "memory_mb": round(max(after - before, 0) / 2**20, 1),
        "threads": worker.device.num_threads,
        "repeats": repeats,
        "onnxruntime": ort.__version__,
        "measured_unix_s": round(unix_time_s()),
    }


async def profile_repository(
    repository: Repository,
    devices: tuple[Device, ...],
    *,
    repeats: int = 20,
    warmup: int = 3,
    progress: Progress | None = None,
    only: set[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Profile every variant (or those `only` names as `family.variant`) on one device of
    each type; returns {type: {variant: entry}}."""
    say = progress or (lambda message, done: None)
    by_type = {d.device_type: d for d in devices}
    results: dict[str, dict[str, Any]] = {}
    done = 0
    for device_type, device in by_type.items():
        worker = WorkerHandle(device)
        await worker.start()
        try:
            for family in repository.families.values():
                for variant in family.config.variants:
                    if only is not None and f"{family.name}.{variant}" not in only:
                        continue
                    say(f"{family.name}.{variant} on {device_type}", done)
                    entry = await _profile_variant(worker, family, variant, repeats, warmup)
                    _write(family.model_path(variant).parent / PROFILE_FILE, device_type, entry)
                    results.setdefault(device_type, {})[f"{family.name}.{variant}"] = entry
                    done += 1
        finally:
            await worker.stop()
    say("done", done)
    return results


def local_device_types() -> tuple[Device, ...]:
    """One device of each type this machine serves with by default: one core (`cpu1`) and,
    where there are more, all of them."""
    cores = tuple(sorted(os.sched_getaffinity(0)))
    one = Device("cpu-one", DeviceKind.CPU, cores[:1])
    return (one,) if len(cores) == 1 else (one, Device("cpu-all", DeviceKind.CPU, cores))


def profile_served_versions(
    family_dir: Path, variants: list[str], *, repeats: int = 5, warmup: int = 1
) -> dict[str, dict[str, Any]]:
    """Profile the served versions of `variants` on this machine's device types (a version
    just registered), so a server swapping them in plans with their own latencies."""
    from rheostat.repository.loader import load_family

    family = load_family(family_dir)
    repository = Repository(family_dir.parent, {family.name: family})
    only = {f"{family.name}.{v}" for v in variants}
    return asyncio.run(
        profile_repository(
            repository, local_device_types(), repeats=repeats, warmup=warmup, only=only
        )
    )


def run_profile(
    repository: Repository,
    devices: tuple[Device, ...],
    repeats: int,
    warmup: int,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    return asyncio.run(
        profile_repository(repository, devices, repeats=repeats, warmup=warmup, progress=progress)
    )
