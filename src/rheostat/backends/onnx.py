"""ONNX Runtime sessions of one device, with each variant's input preparation.

Lives inside a worker process (see `rheostat.workers.process`). One `InferenceSession` per
loaded variant, with `intra_op_num_threads` equal to the device's cores and sequential
execution, so a device's batches never compete with each other for its cores.

A staged variant (a cascade, a multi-exit network's adaptive exit) holds one session per
stage. A batch runs through its stages, and each stage answers the rows it is confident
about (top softmax probability at or above its threshold); only the other rows go on, as
the stage's `carry` features or as the original input. ONNX Runtime runs a whole graph
whatever outputs are asked for (measured: the first exit of a two-exit graph costs what
the last does), so conditional execution has to be stages of their own.
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
from rheostat.repository.loader import Family
from rheostat.repository.schema import ImagePreprocessing, Stage, TensorSpec

__all__ = ["LoadSpec", "OnnxBackend", "load_spec", "softmax_confidence"]


@dataclass(frozen=True)
class LoadSpec:
    """Everything a worker needs to load one variant (picklable)."""

    key: str
    model_path: Path
    input: TensorSpec
    output_name: str
    preprocessing: ImagePreprocessing | None
    stages: tuple[tuple[Path, Stage], ...] = ()  # a staged variant: each stage's file

    @property
    def files(self) -> tuple[Path, ...]:
        """Every model file the variant needs."""
        return tuple(p for p, _ in self.stages) or (self.model_path,)


def load_spec(family: Family, variant: str, version: int | None = None) -> LoadSpec:
    """What a worker needs to open `version` (default: the served one) of `variant`."""
    config = family.config.variants[variant]
    folder = family.version_dir(variant, version)
    return LoadSpec(
        key=f"{family.name}.{variant}",
        model_path=family.model_path(variant, version),
        input=config.input,
        output_name=config.output or family.config.output.name,
        preprocessing=config.preprocessing,
        stages=tuple((folder / s.model, s) for s in config.stages),
    )


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """Top softmax probability of each row of class scores."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    result: np.ndarray = 1.0 / weights.sum(axis=1)  # exp(0) of the top class over the sum
    return result


@dataclass
class _Loaded:
    spec: LoadSpec
    session: Any  # ort.InferenceSession
    stages: tuple[tuple[Stage, Any, str], ...] = ()  # (stage, its session, its input name)


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

    def _session(self, path: Path) -> Any:
        return ort.InferenceSession(
            str(path), _session_options(self.device), providers=_providers(self.device)
        )

    def load(self, spec: LoadSpec) -> None:
        if spec.stages:
            self._load_staged(spec)
            return
        session = self._session(spec.model_path)
        inputs = {i.name: i for i in session.get_inputs()}
        if spec.input.name not in inputs:
            raise ValueError(
                f"{spec.model_path}: model has inputs {sorted(inputs)}, "
                f"config says {spec.input.name!r}"
            )
        _check_outputs(spec.model_path, session, [spec.output_name])
        self.loaded[spec.key] = _Loaded(spec, session)

    def _load_staged(self, spec: LoadSpec) -> None:
        stages = []
        for index, (path, stage) in enumerate(spec.stages):
            session = self._session(path)
            inputs = [i.name for i in session.get_inputs()]
            if len(inputs) != 1:
                raise ValueError(f"{path}: a stage takes one input, this model has {inputs}")
            if index == 0 and inputs[0] != spec.input.name:
                raise ValueError(
                    f"{path}: first stage takes {inputs[0]!r}, config says {spec.input.name!r}"
                )
            _check_outputs(path, session, [stage.output, *([stage.carry] if stage.carry else [])])
            stages.append((stage, session, inputs[0]))
        self.loaded[spec.key] = _Loaded(spec, stages[0][1], tuple(stages))

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
        exits: np.ndarray | None = None
        with Stopwatch() as watch:
            if loaded.stages:
                out, exits = _run_stages(loaded.stages, batch)
            else:
                (out,) = loaded.session.run(
                    [loaded.spec.output_name], {loaded.spec.input.name: batch}
                )
        good = iter(out)
        outputs = tuple(errors[i] if i in errors else next(good) for i in range(len(payloads)))
        stages: tuple[int, ...] = ()
        if exits is not None:
            answered = iter(exits.tolist())
            stages = tuple(0 if i in errors else next(answered) for i in range(len(payloads)))
        return BatchResult(outputs=outputs, compute_s=watch.elapsed_s, stages=stages)

    def _prepare(self, spec: LoadSpec, payload: Payload) -> np.ndarray:
        if payload.kind is PayloadKind.TENSOR:
            return np.asarray(payload.data, dtype=spec.input.numpy_dtype)
        if spec.preprocessing is None:
            raise ValueError(f"{spec.key} takes tensors, not images")
        from rheostat.lifecycle.images import decode_image, preprocess_image

        image = decode_image(payload.data) if payload.kind is PayloadKind.ENCODED else payload.data
        return preprocess_image(image, spec.preprocessing)

    def profile(
        self, key: str, batch_sizes: Sequence[int], repeats: int, *, worst: bool = False
    ) -> dict[int, float]:
        """Median seconds per batch size on synthetic input (after one warm-up run).

        A staged variant is timed at its expected cost (each stage on its `reach` share of
        the batch) or, with `worst`, with every row going through every stage."""
        detail = self.profile_percentiles(key, batch_sizes, repeats, warmup=1, worst=worst)
        return {b: d["p50_s"] for b, d in detail.items()}

    def profile_percentiles(
        self, key: str, batch_sizes: Sequence[int], repeats: int, warmup: int, worst: bool = False
    ) -> dict[int, dict[str, float]]:
        """p50/p95/p99 seconds and throughput per batch size, on random input."""
        loaded = self.loaded[key]
        dims = [d if d > 0 else 1 for d in loaded.spec.input.dims]
        rng = np.random.default_rng(0)
        detail = {}
        for b in batch_sizes:
            x = rng.uniform(-1, 1, [b, *dims]).astype(loaded.spec.input.numpy_dtype)
            feed = {loaded.spec.input.name: x}

            def once(x: np.ndarray = x, feed: dict[str, np.ndarray] = feed) -> float:
                if loaded.stages:
                    return _time_stages(loaded.stages, x, worst=worst)
                with Stopwatch() as watch:
                    loaded.session.run([loaded.spec.output_name], feed)
                return watch.elapsed_s

            for _ in range(warmup):
                once()
            times = [once() for _ in range(repeats)]
            p50, p95, p99 = (float(v) for v in np.percentile(times, [50, 95, 99]))
            detail[b] = {"p50_s": p50, "p95_s": p95, "p99_s": p99, "throughput_rps": b / p50}
        return detail


def _check_outputs(path: Path, session: Any, names: Sequence[str]) -> None:
    outputs = [o.name for o in session.get_outputs()]
    missing = [n for n in names if n not in outputs]
    if missing:
        raise ValueError(f"{path}: model has outputs {outputs}, config names {missing[0]!r}")


def _time_stages(
    stages: Sequence[tuple[Stage, Any, str]], batch: np.ndarray, *, worst: bool = False
) -> float:
    """Seconds a batch of `len(batch)` rows is expected to take through the stages (random
    input, whose confidence means nothing, so the split comes from each stage's `reach`).

    Stage k is expected to see `reach_k * n` rows, perhaps less than one: it is timed on
    `m_k = max(1, round(reach_k * n))` rows and charged `reach_k * n / m_k` of that. With
    `worst`, every stage runs on every row.
    """
    n = len(batch)
    x = batch
    total = 0.0
    for stage, session, input_name in stages:
        share = 1.0 if worst else stage.reach
        if share <= 0:
            break
        rows = max(1, round(share * n))
        x = x[:rows]
        names = [stage.output, *([stage.carry] if stage.carry else [])]
        with Stopwatch() as watch:
            results = session.run(names, {input_name: x})
        total += watch.elapsed_s * share * n / rows
        x = results[1] if stage.carry else batch[: len(x)]
    return total


def _run_stages(
    stages: Sequence[tuple[Stage, Any, str]], batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run `batch` through the stages; returns the answers and, per row, the stage (1-based)
    that gave it. Each stage answers the rows whose top probability reaches its threshold."""
    n = len(batch)
    rows = np.arange(n)
    x = batch
    out: np.ndarray | None = None
    exits = np.zeros(n, dtype=np.int64)
    for index, (stage, session, input_name) in enumerate(stages):
        names = [stage.output, *([stage.carry] if stage.carry else [])]
        results = session.run(names, {input_name: x})
        logits = results[0]
        if out is None:
            out = np.empty((n, *logits.shape[1:]), dtype=logits.dtype)
        if stage.threshold is None:
            done = np.ones(len(rows), dtype=bool)
        else:
            done = softmax_confidence(logits) >= stage.threshold
        out[rows[done]] = logits[done]
        exits[rows[done]] = index + 1
        rest = ~done
        if not rest.any():
            break
        rows = rows[rest]
        x = results[1][rest] if stage.carry else batch[rows]
    assert out is not None
    return out, exits
