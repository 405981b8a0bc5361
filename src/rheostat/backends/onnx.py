"""ONNX Runtime sessions of one device, with each variant's input preparation.

Lives inside a worker process (see `rheostat.workers.process`). One `InferenceSession` per
loaded variant, with `intra_op_num_threads` equal to the device's cores and sequential
execution, so a device's batches never compete with each other for its cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rheostat.clock import Stopwatch
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.work import BatchResult, Payload, PayloadKind
from rheostat.repository.schema import ImagePreprocessing, TensorSpec

__all__ = ["LoadSpec", "OnnxBackend"]


@dataclass(frozen=True)
class LoadSpec:
    """Everything a worker needs to load one variant (picklable)."""

    key: str
    model_path: Path
    input: TensorSpec
    output_name: str
    preprocessing: ImagePreprocessing | None


@dataclass
class _Loaded:
    spec: LoadSpec
    session: Any  # ort.InferenceSession


def _session_options(device: Device) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = device.num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # A worker holds one session per variant, each with its own intra-op pool; spinning
    # pools of idle sessions steal the cores of the one running (measured: up to 2x slower).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _providers(device: Device) -> list[Any]:
    if device.kind is DeviceKind.GPU:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                f"device {device.name} is a GPU but this onnxruntime has no CUDA provider "
                f"(available: {ort.get_available_providers()}); install onnxruntime-gpu"
            )
        return [("CUDAExecutionProvider", {"device_id": device.gpu_index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxBackend:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.loaded: dict[str, _Loaded] = {}

    def load(self, spec: LoadSpec) -> None:
        session = ort.InferenceSession(
            str(spec.model_path), _session_options(self.device), providers=_providers(self.device)
        )
        inputs = {i.name: i for i in session.get_inputs()}
        if spec.input.name not in inputs:
            raise ValueError(
                f"{spec.model_path}: model has inputs {sorted(inputs)}, "
                f"config says {spec.input.name!r}"
            )
        self.loaded[spec.key] = _Loaded(spec, session)

    def unload(self, key: str) -> None:
        self.loaded.pop(key, None)

    def run(self, key: str, payloads: Sequence[Payload]) -> BatchResult:
        """Prepare each payload, run the good ones as one batch, keep per-item errors."""
        loaded = self.loaded[key]
        rows: list[np.ndarray] = []
        errors: dict[int, str] = {}
        for index, payload in enumerate(payloads):
            try:
                rows.append(self._prepare(loaded.spec, payload))
            except ValueError as exc:
                errors[index] = str(exc)
        if not rows:
            return BatchResult(outputs=tuple(errors[i] for i in range(len(payloads))))
        batch = np.stack(rows)
        with Stopwatch() as watch:
            (out,) = loaded.session.run([loaded.spec.output_name], {loaded.spec.input.name: batch})
        good = iter(out)
        outputs = tuple(errors[i] if i in errors else next(good) for i in range(len(payloads)))
        return BatchResult(outputs=outputs, compute_s=watch.elapsed_s)

    def _prepare(self, spec: LoadSpec, payload: Payload) -> np.ndarray:
        if payload.kind is PayloadKind.TENSOR:
            return np.asarray(payload.data, dtype=spec.input.numpy_dtype)
        if spec.preprocessing is None:
            raise ValueError(f"{spec.key} takes tensors, not images")
        from rheostat.lifecycle.images import decode_image, preprocess_image

        image = decode_image(payload.data) if payload.kind is PayloadKind.ENCODED else payload.data
        return preprocess_image(image, spec.preprocessing)

    def profile(self, key: str, batch_sizes: Sequence[int], repeats: int) -> dict[int, float]:
        """Median seconds per batch size on synthetic input (after one warm-up run)."""
        detail = self.profile_percentiles(key, batch_sizes, repeats, warmup=1)
        return {b: d["p50_s"] for b, d in detail.items()}

    def profile_percentiles(
        self, key: str, batch_sizes: Sequence[int], repeats: int, warmup: int
    ) -> dict[int, dict[str, float]]:
        """p50/p95/p99 seconds and throughput per batch size, on random input."""
        loaded = self.loaded[key]
        dims = [d if d > 0 else 1 for d in loaded.spec.input.dims]
        rng = np.random.default_rng(0)
        detail = {}
        for b in batch_sizes:
            x = rng.uniform(-1, 1, [b, *dims]).astype(loaded.spec.input.numpy_dtype)
            feed = {loaded.spec.input.name: x}
            for _ in range(warmup):
                loaded.session.run([loaded.spec.output_name], feed)
            times = []
            for _ in range(repeats):
                with Stopwatch() as watch:
                    loaded.session.run([loaded.spec.output_name], feed)
                times.append(watch.elapsed_s)
            p50, p95, p99 = (float(v) for v in np.percentile(times, [50, 95, 99]))
            detail[b] = {"p50_s": p50, "p95_s": p95, "p99_s": p99, "throughput_rps": b / p50}
        return detail
