"""Typed, frozen description of one model family's `config.yaml`.

Field names follow Triton's model configuration where they mean the same thing
(`max_batch_size`, `dynamic_batching.max_queue_delay_microseconds`, `preferred_batch_size`,
`default_queue_policy`, `instance_group`, `input`/`output` with `data_type` and `dims`).
rheostat adds what Triton has no word for: a family has *variants*, each with its accuracy
(and how that figure was obtained), its own input tensor and its image preprocessing.

These dataclasses validate values that do not depend on where they were read from; the loader
(`loader.py`) turns a failure into a `RepositoryError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "BatchPolicyName",
    "DynamicBatching",
    "FamilyConfig",
    "ImagePreprocessing",
    "InputKind",
    "InstanceGroup",
    "QueuePolicy",
    "Stage",
    "TensorSpec",
    "VariantConfig",
]

# Triton `data_type` -> (Open Inference Protocol datatype, numpy dtype)
DTYPES: dict[str, tuple[str, np.dtype[Any]]] = {
    "TYPE_BOOL": ("BOOL", np.dtype(np.bool_)),
    "TYPE_UINT8": ("UINT8", np.dtype(np.uint8)),
    "TYPE_INT8": ("INT8", np.dtype(np.int8)),
    "TYPE_INT32": ("INT32", np.dtype(np.int32)),
    "TYPE_INT64": ("INT64", np.dtype(np.int64)),
    "TYPE_FP16": ("FP16", np.dtype(np.float16)),
    "TYPE_FP32": ("FP32", np.dtype(np.float32)),
    "TYPE_FP64": ("FP64", np.dtype(np.float64)),
}


class InputKind(StrEnum):
    """What a family's endpoint accepts."""

    IMAGE = "image"  # `image`: encoded JPEG/PNG (BYTES) or UINT8 HWC of any size
    TENSOR = "tensor"  # the variants' common input tensor, as is


class BatchPolicyName(StrEnum):
    FIXED = "fixed"
    MAX_DELAY = "max_delay"
    DEADLINE_AWARE = "deadline_aware"
    AIMD = "aimd"


def _check(condition: bool, field_name: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{field_name}: {problem}")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor; `dims` exclude the batch dimension (Triton convention)."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        _check(bool(self.name), "name", "must be a non-empty string")
        _check(
            self.data_type in DTYPES,
            "data_type",
            f"{self.data_type!r} is not one of {sorted(DTYPES)}",
        )
        _check(
            all(d > 0 or d == -1 for d in self.dims),
            "dims",
            f"{list(self.dims)} must be positive sizes or -1 (variable)",
        )

    @property
    def datatype(self) -> str:
        """The Open Inference Protocol name of the dtype (FP32, UINT8, ...)."""
        return DTYPES[self.data_type][0]

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        return DTYPES[self.data_type][1]


@dataclass(frozen=True)
class ImagePreprocessing:
    """Resize the shorter side, centre-crop a square, normalise, lay out as NCHW or NHWC."""

    crop_px: int
    resize_shorter_px: int
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        _check(self.crop_px > 0, "crop_px", f"{self.crop_px} must be > 0")
        _check(
            self.resize_shorter_px >= self.crop_px,
            "resize_shorter_px",
            f"{self.resize_shorter_px} must be >= crop_px ({self.crop_px})",
        )
        _check(len(self.mean) == 3, "mean", f"{list(self.mean)} must have 3 values (RGB)")
        _check(
            len(self.std) == 3 and all(s > 0 for s in self.std),
            "std",
            f"{list(self.std)} must be 3 positive values (RGB)",
        )
        _check(self.layout in ("NCHW", "NHWC"), "layout", f"{self.layout!r} is not NCHW or NHWC")


@dataclass(frozen=True)
class Stage:
    """One step of a conditional (staged) variant: a cascade's model or a multi-exit
    network's segment.

    The stage runs `model` (a file in the variant's version folder) on the rows that reach it
    and reads class scores from `output`. Rows whose top softmax probability is at least
    `threshold` are answered there; the others go on to the next stage. The next stage takes
    this stage's `carry` output (a multi-exit network's features) or, without `carry`, the
    variant's original input (a cascade). `reach` is the share of rows expected to reach the
    stage, measured on validation data: profiles and plans use it as the stage's expected
    load.
    """

    model: str
    output: str
    threshold: float | None = None
    carry: str | None = None
    reach: float = 1.0

    def __post_init__(self) -> None:
        _check(
            bool(self.model) and "/" not in self.model and self.model.endswith(".onnx"),
            "model",
            f"{self.model!r} must be an .onnx file name in the version folder",
        )
        _check(bool(self.output), "output", "must name the stage's class-score output")
        if self.threshold is not None:
            _check(0.0 <= self.threshold <= 1.0, "threshold", f"{self.threshold} not in [0, 1]")
        _check(0.0 <= self.reach <= 1.0, "reach", f"{self.reach} must be in [0, 1]")


@dataclass(frozen=True)
class VariantConfig:
    """One variant of a family: a model file plus what rheostat needs to know about it.

    A staged variant (`stages`) is a cascade or the adaptive exit of a multi-exit network:
    its version folder holds one file per stage instead of `model.onnx`.
    """

    name: str
    accuracy: float
    accuracy_source: str
    input: TensorSpec
    preprocessing: ImagePreprocessing | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stages: tuple[Stage, ...] = ()
    output: str | None = None
    """The model's class-score output when it is not the family's (a multi-exit network's
    exit); answers still carry the family's output name."""
    jpeg_accuracy: dict[int, float] = field(default_factory=dict)
    """An image variant's accuracy (measured as `accuracy_source` says) when its frames come
    as JPEG at each of these qualities, resized to its input size by the client: what an
    edge client's mapping may trade for fewer bytes on a slow link. Empty: not measured
    (a client is then only told the input size)."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.accuracy <= 1.0, "accuracy", f"{self.accuracy} must be in [0, 1]")
        for quality, score in self.jpeg_accuracy.items():
            _check(
                isinstance(quality, int) and 1 <= quality <= 100 and 0.0 <= score <= 1.0,
                f"jpeg_accuracy.{quality}",
                f"{score}: qualities must be integers in [1, 100] and accuracies in [0, 1]",
            )
        _check(
            not self.jpeg_accuracy or self.preprocessing is not None,
            "jpeg_accuracy",
            "only a variant that takes images (has preprocessing) is sent JPEG frames",
        )
        _check(bool(self.accuracy_source), "accuracy_source", "must say how accuracy was obtained")
        if self.stages:
            _check(len(self.stages) >= 2, "stages", "a staged variant needs at least 2 stages")
            _check(
                all(s.threshold is not None for s in self.stages[:-1]),
                "stages",
                "every stage but the last needs a threshold",
            )
            _check(
                self.stages[-1].threshold is None and self.stages[-1].carry is None,
                "stages",
                "the last stage answers every row it gets: no threshold, no carry",
            )
            _check(self.stages[0].reach == 1.0, "stages[0].reach", "the first stage sees every row")


@dataclass(frozen=True)
class QueuePolicy:
    """Triton's `default_queue_policy`, the subset rheostat honours."""

    max_queue_size: int = 64
    default_timeout_microseconds: int = 0  # 0: use the family's slo_ms

    def __post_init__(self) -> None:
        _check(self.max_queue_size > 0, "max_queue_size", f"{self.max_queue_size} must be > 0")
        _check(
            self.default_timeout_microseconds >= 0,
            "default_timeout_microseconds",
            f"{self.default_timeout_microseconds} must be >= 0",
        )


@dataclass(frozen=True)
class DynamicBatching:
    policy: BatchPolicyName = BatchPolicyName.DEADLINE_AWARE
    max_queue_delay_microseconds: int = 0
    preferred_batch_size: tuple[int, ...] = ()
    default_queue_policy: QueuePolicy = field(default_factory=QueuePolicy)
    latency_margin_microseconds: int = 1000  # rheostat: slack kept before a deadline
    # rheostat, deadline_aware only: under a backlog, drop the few requests at the head that
    # keep the batch small when a larger batch serves more requests per second
    shed_for_goodput: bool = True

    def __post_init__(self) -> None:
        _check(
            self.max_queue_delay_microseconds >= 0,
            "max_queue_delay_microseconds",
            f"{self.max_queue_delay_microseconds} must be >= 0",
        )
        _check(
            self.latency_margin_microseconds >= 0,
            "latency_margin_microseconds",
            f"{self.latency_margin_microseconds} must be >= 0",
        )
        _check(
            all(b > 0 for b in self.preferred_batch_size),
            "preferred_batch_size",
            f"{list(self.preferred_batch_size)} must be positive",
        )


@dataclass(frozen=True)
class InstanceGroup:
    """Which device kinds may host this family (Triton's `kind`)."""

    kind: str = "KIND_CPU"

    def __post_init__(self) -> None:
        _check(
            self.kind in ("KIND_CPU", "KIND_GPU"),
            "kind",
            f"{self.kind!r} is not KIND_CPU or KIND_GPU",
        )


@dataclass(frozen=True)
class FamilyConfig:
    name: str
    max_batch_size: int
    input_kind: InputKind
    output: TensorSpec
    variants: dict[str, VariantConfig]
    slo_ms: float = 1000.0
    platform: str = "onnxruntime_onnx"
    labels: tuple[str, ...] = ()
    dynamic_batching: DynamicBatching = field(default_factory=DynamicBatching)
    instance_group: tuple[InstanceGroup, ...] = (InstanceGroup(),)
    description: str = ""

    def __post_init__(self) -> None:
        _check(self.max_batch_size >= 1, "max_batch_size", f"{self.max_batch_size} must be >= 1")
        _check(self.slo_ms > 0, "slo_ms", f"{self.slo_ms} must be > 0")
        _check(
            self.platform == "onnxruntime_onnx",
            "platform",
            f"{self.platform!r} is not supported; expected 'onnxruntime_onnx'",
        )
        _check(bool(self.variants), "variants", "a family needs at least one variant")
        too_big = [b for b in self.dynamic_batching.preferred_batch_size if b > self.max_batch_size]
        _check(
            not too_big,
            "dynamic_batching.preferred_batch_size",
            f"{too_big} exceed max_batch_size {self.max_batch_size}",
        )
        if self.input_kind is InputKind.IMAGE:
            missing = [v.name for v in self.variants.values() if v.preprocessing is None]
            _check(
                not missing,
                "variants",
                f"{missing} need `preprocessing` because input_kind is 'image'",
            )
        if self.input_kind is InputKind.TENSOR:
            inputs = {v.input for v in self.variants.values()}
            _check(
                len(inputs) == 1,
                "variants",
                f"input_kind 'tensor' needs one input shared by every variant, got {inputs}",
            )
        if self.labels and self.output.dims and self.output.dims[-1] != -1:
            _check(
                len(self.labels) == self.output.dims[-1],
                "labels",
                f"{len(self.labels)} labels but output has {self.output.dims[-1]} classes",
            )

    @property
    def device_kinds(self) -> frozenset[str]:
        return frozenset("gpu" if g.kind == "KIND_GPU" else "cpu" for g in self.instance_group)

    @property
    def default_timeout_s(self) -> float:
        """The deadline given to requests that bring none of their own."""
        micros = self.dynamic_batching.default_queue_policy.default_timeout_microseconds
        return micros / 1e6 if micros else self.slo_ms / 1e3
