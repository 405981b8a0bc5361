"""The body of a device worker on a Ray node: ONNX Runtime sessions in a Ray actor.

It does what a local worker process does (`rheostat.workers.process`) behind Ray's actor
calls. Model files reach the node through Ray's object store, not a shared filesystem: the
front end puts each model's bytes once and `load` writes them to the actor's own temporary
folder before opening the session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rheostat.backends.onnx import LoadSpec, OnnxBackend
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.work import BatchResult, Payload

__all__ = ["DeviceActor"]


class DeviceActor:
    """One device's worker; Ray runs one call at a time (a device runs one batch at a time)."""

    def __init__(self, device: Device) -> None:
        if device.kind is DeviceKind.GPU:  # Ray shows the actor only its own GPU, as index 0
            device = dataclasses.replace(device, gpu_index=0)
        self.device = device
        self.backend = OnnxBackend(device)
        self.folder = Path(tempfile.mkdtemp(prefix=f"rheostat-{device.name}-"))

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    def load(self, spec: LoadSpec, *models: bytes) -> None:
        """Open `spec` from the bytes of its files (`spec.files`, in order), written here."""
        paths = [self._write(spec.key, model) for model in models]
        stages = (
            tuple((p, s) for p, (_, s) in zip(paths, spec.stages, strict=True))
            if spec.stages
            else ()
        )
        self.backend.load(dataclasses.replace(spec, model_path=paths[0], stages=stages))

    def _write(self, key: str, model: bytes) -> Path:
        digest = hashlib.sha256(model).hexdigest()[:16]
        path = self.folder / f"{key}-{digest}.onnx"
        if not path.is_file():
            partial = path.with_suffix(".part")
            partial.write_bytes(model)
            partial.replace(path)
        return path

    def unload(self, key: str) -> None:
        self.backend.unload(key)

    def run(self, key: str, payloads: Sequence[Payload]) -> BatchResult:
        return self.backend.run(key, payloads)

    def profile(
        self, key: str, batch_sizes: Sequence[int], repeats: int, worst: bool = False
    ) -> dict[int, float]:
        return self.backend.profile(key, batch_sizes, repeats, worst=worst)

    def close(self) -> None:
        self.backend.loaded.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
