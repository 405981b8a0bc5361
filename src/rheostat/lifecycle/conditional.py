"""Conditional execution: a multi-exit digits network (Dělen) and cascades (Willump).

**Multi-exit** (`build_multiexit_family`): one network with three exits trained jointly (the
sum of the exits' losses), served as the family `digits_exits`. Each exit is a variant of
its own (`exit1`..`exit3`: the network up to that exit, one graph each) with its own
profiled latency and measured accuracy, so the planner, the router's degrade ladder and the
simulator pick exits like any variant: a tighter latency bound lands on an earlier exit.
The variant `adaptive` runs the same weights as three stages that hand their features on,
and stops at the first exit confident enough (the confidence rule).

**Cascade** (`build_cascade`): a cheap variant answers the rows it is confident about and
the others go to a strong variant. The confidence threshold is tuned on validation data to
the lowest value that keeps accuracy within `tolerance` of the strong variant's, which
maximises the rows the cheap model answers.

Both are staged variants (see `rheostat.repository.schema.Stage`), run by the same
`OnnxBackend` code in the server and here when accuracy is measured. Every stage records
`reach`, the share of validation rows that got to it: profiles charge each stage that share
of a batch, so a cascade's profiled cost is its expected cost.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from rheostat.backends.onnx import OnnxBackend, load_spec, softmax_confidence
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.work import Payload, PayloadKind
from rheostat.lifecycle.digits import (
    SEED,
    _AsImage,
    _epoch,
    _fit_validation_split,
    _loss,
    _Scale,
    _shifted_copies,
    _snapshot,
    digits_family_config,
    load_digits_split,
)
from rheostat.lifecycle.quantize import export_onnx, ort_session
from rheostat.lifecycle.registry import register_version, rewrite_version_file
from rheostat.repository.loader import MODEL_FILE, load_family, write_family_config
from rheostat.repository.schema import Stage, TensorSpec, VariantConfig

__all__ = [
    "EXITS_FAMILY",
    "ThresholdChoice",
    "build_cascade",
    "build_multiexit_family",
    "choose_threshold",
    "measure_variant",
    "refresh_cascade",
]

EXITS_FAMILY = "digits_exits"
EXIT_NAMES = ("exit1", "exit2", "exit3")
FloatArray = NDArray[np.float32]
LabelArray = NDArray[np.int64]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    accuracy: float  # on the validation rows, with the threshold
    reach: tuple[float, ...]  # share of rows reaching each stage (first: 1.0)


def choose_threshold(
    confidence: Sequence[NDArray[np.floating[Any]]],
    correct: Sequence[NDArray[np.bool_]],
    target: float,
) -> ThresholdChoice:
    """The lowest confidence threshold (shared by every stage but the last) whose staged
    accuracy on these rows is at least `target`.

    `confidence[k]` and `correct[k]` are stage k's top probability and correctness on every
    row. A lower threshold answers more rows early, so the lowest one meeting the target is
    the cheapest. When none meets it, the threshold is 1.0 (only certain rows exit early).
    """
    stages = len(correct)
    candidates = sorted({float(c) for conf in confidence[:-1] for c in conf} | {1.0})
    best: ThresholdChoice | None = None
    for threshold in candidates:
        choice = _staged(confidence, correct, threshold, stages)
        if choice.accuracy >= target:
            best = choice
            break
    return best or _staged(confidence, correct, 1.0, stages)


def _staged(
    confidence: Sequence[NDArray[np.floating[Any]]],
    correct: Sequence[NDArray[np.bool_]],
    threshold: float,
    stages: int,
) -> ThresholdChoice:
    n = len(correct[0])
    open_rows = np.ones(n, dtype=bool)
    right = 0
    reach = []
    for k in range(stages):
        reach.append(float(open_rows.mean()))
        done = open_rows if k == stages - 1 else open_rows & (confidence[k] >= threshold)
        right += int(np.sum(correct[k][done]))
        open_rows &= ~done
    return ThresholdChoice(threshold, right / n, tuple(reach))


def measure_variant(
    family_dir: Path, variant: str, x: FloatArray, y: LabelArray
) -> tuple[float, NDArray[np.int64]]:
    """Accuracy of a variant on (x, y), run by the server's own backend; and per row the
    stage that answered (0 for a plain variant)."""
    family = load_family(family_dir)
    cores = tuple(sorted(os.sched_getaffinity(0)))[:1]
    backend = OnnxBackend(Device("build", DeviceKind.CPU, cores))
    spec = load_spec(family, variant)
    backend.load(spec)
    rows = [Payload(PayloadKind.TENSOR, row) for row in x]
    predicted: list[int] = []
    exits: list[int] = []
    for start in range(0, len(rows), 64):
        result = backend.run(spec.key, rows[start : start + 64])
        predicted.extend(int(np.argmax(o)) for o in result.outputs)
        exits.extend(result.stages or [0] * len(result.outputs))
    return float(np.mean(np.array(predicted) == y)), np.array(exits, dtype=np.int64)


# -- multi-exit network ----------------------------------------------------------------------


class _Block1(nn.Module):
    """Raw pixels -> (exit 1 scores, features [16, 8, 8])."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(_Scale(), _AsImage(), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


class _Block2(nn.Module):
    """Features [16, 8, 8] -> (exit 2 scores, features [32, 8, 8])."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


class _Block3(nn.Module):
    """Features [32, 8, 8] -> exit 3 scores: the wide, costly end of the network."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(32, 96, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(96, 96, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(96 * 4 * 4, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.body(x)
        return result


class _MultiExit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1, self.block2, self.block3 = _Block1(), _Block2(), _Block3()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        exit1, f1 = self.block1(x)
        exit2, f2 = self.block2(f1)
        return exit1, exit2, self.block3(f2)


class _Prefix(nn.Module):
    """The network up to exit `k` (1-based), returning that exit's scores only."""

    def __init__(self, net: _MultiExit, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exit1, f1 = self.net.block1(x)
        if self.k == 1:
            return exit1  # type: ignore[no-any-return]
        exit2, f2 = self.net.block2(f1)
        return exit2 if self.k == 2 else self.net.block3(f2)  # type: ignore[no-any-return]


def _summed_exits(exits: Sequence[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """The multi-exit objective: the exits' cross-entropies, summed."""
    return torch.stack([nn.functional.cross_entropy(s, y) for s in exits]).sum()


def _train_multiexit(x_train: FloatArray, y_train: LabelArray, epochs: int = 10) -> _MultiExit:
    """Adam on the sum of the three exits' cross-entropy; keeps the epoch with the lowest
    validation loss (summed over exits). Seeded, CPU, a few seconds."""
    data = _fit_validation_split(x_train, y_train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = _MultiExit()
        x_fit, y_fit = _shifted_copies(data.x_fit, data.y_fit)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
        generator = torch.Generator().manual_seed(SEED)
        best_loss, best_state = float("inf"), _snapshot(net)
        for _ in range(epochs):
            order = torch.randperm(len(x_fit), generator=generator)
            _epoch(net, optimizer, x_fit, y_fit, order, 64, _summed_exits)
            val = _loss(net, data.x_val, data.y_val, _summed_exits)
            if val < best_loss:
                best_loss, best_state = val, _snapshot(net)
        net.load_state_dict(best_state)
        return net.eval()


def _exit_scores(
    net: _MultiExit, x: FloatArray
) -> tuple[list[NDArray[np.float32]], list[NDArray[np.float32]]]:
    """Per exit: scores and top softmax probability on `x` (torch, for threshold tuning)."""
    with torch.no_grad():
        scores = [s.numpy() for s in net(torch.from_numpy(x))]
    return scores, [softmax_confidence(s) for s in scores]


def build_multiexit_family(
    family_dir: Path, *, target_drop: float = 0.005, progress: Progress | None = None
) -> dict[str, Any]:
    """Train the multi-exit network and write the family `digits_exits` into `family_dir`.

    The adaptive variant's threshold is the lowest whose validation accuracy is within
    `target_drop` of the last exit's. Returns per variant its accuracy (measured on the
    540 held-out test digits, through ONNX Runtime) and, for `adaptive`, where rows exit.
    """
    say = progress or (lambda message: None)
    say(f"training {EXITS_FAMILY} (3 exits) ...")
    x_train, y_train, x_test, y_test = load_digits_split()
    net = _train_multiexit(x_train, y_train)
    spec = TensorSpec("input", "TYPE_FP32", (64,))
    example = torch.zeros(1, 64)
    variants: dict[str, VariantConfig] = {}
    source = f"measured: top-1 on {len(y_test)} held-out scikit-learn digits (seed {SEED})"
    for k, name in enumerate(EXIT_NAMES, start=1):
        export_onnx(_Prefix(net, k), example, family_dir / name / "1" / MODEL_FILE)
        variants[name] = VariantConfig(
            name, 0.0, source, spec, metadata={"exit": k, "of": len(EXIT_NAMES)}
        )
    folder = family_dir / "adaptive" / "1"
    export_onnx(net.block1, example, folder / "stage1.onnx", extra_outputs=["features1"])
    export_onnx(
        net.block2, torch.zeros(1, 16, 8, 8), folder / "stage2.onnx",
        input_name="features1", extra_outputs=["features2"],
    )  # fmt: skip
    export_onnx(
        net.block3, torch.zeros(1, 32, 8, 8), folder / "stage3.onnx", input_name="features2"
    )
    data = _fit_validation_split(x_train, y_train)
    x_val, y_val = data.x_val.numpy(), data.y_val.numpy()
    scores, confidence = _exit_scores(net, x_val)
    correct = [s.argmax(axis=1) == y_val for s in scores]
    choice = choose_threshold(confidence, correct, float(correct[-1].mean()) - target_drop)
    stages = tuple(
        Stage(
            model=f"stage{k}.onnx",
            output="logits",
            threshold=None if k == 3 else round(choice.threshold, 6),
            carry=None if k == 3 else f"features{k}",
            reach=round(choice.reach[k - 1], 4),
        )
        for k in (1, 2, 3)
    )
    variants["adaptive"] = VariantConfig(
        "adaptive", 0.0, source, spec, stages=stages,
        metadata={"rule": "first exit whose top softmax probability >= threshold",
                  "validation_accuracy": round(choice.accuracy, 6)},
    )  # fmt: skip
    config = replace(
        digits_family_config(variants),
        name=EXITS_FAMILY,
        description="8x8 digits by one multi-exit CNN: each exit a variant, plus the "
        "confidence-based adaptive exit",
    )
    write_family_config(family_dir, config)
    return _measure_all(family_dir, config, x_test, y_test)


def _measure_all(
    family_dir: Path, config: Any, x_test: FloatArray, y_test: LabelArray
) -> dict[str, Any]:
    """Measure every variant on the test split and write the figures into config.yaml."""
    report: dict[str, Any] = {}
    measured = {}
    for name, variant in config.variants.items():
        accuracy, exits = measure_variant(family_dir, name, x_test, y_test)
        extra = dict(variant.metadata)
        if variant.stages:
            shares = np.bincount(exits, minlength=len(variant.stages) + 1)[1:] / len(exits)
            extra["test_exit_shares"] = [round(float(s), 4) for s in shares]
        measured[name] = replace(variant, accuracy=accuracy, metadata=extra)
        report[name] = {"accuracy": accuracy, **extra}
    write_family_config(family_dir, replace(config, variants=measured))
    return report


# -- cascades --------------------------------------------------------------------------------


def _tune(
    family_dir: Path,
    cheap: str,
    strong: str,
    validation: tuple[FloatArray, LabelArray],
    tolerance: float,
) -> ThresholdChoice:
    """The cascade threshold for the served versions of `cheap` and `strong`."""
    family = load_family(family_dir)
    x_val, y_val = validation
    scores = [
        ort_session(family.model_path(v)).run(None, {"input": x_val})[0] for v in (cheap, strong)
    ]
    confidence = [softmax_confidence(s) for s in scores]
    correct = [s.argmax(axis=1) == y_val for s in scores]
    return choose_threshold(confidence, correct, float(correct[1].mean()) - tolerance)


def refresh_cascade(
    family_dir: Path,
    name: str,
    validation: tuple[FloatArray, LabelArray],
    test: tuple[FloatArray, LabelArray],
) -> dict[str, Any]:
    """Register a new version of the cascade `name` from the versions of its two models
    served now (after they were retrained), with its threshold tuned again on `validation`
    and its accuracy measured on `test`."""
    family = load_family(family_dir)
    config = family.config.variants[name]
    cheap, strong = config.metadata["cheap"], config.metadata["strong"]
    tolerance = float(config.metadata.get("tolerance", 0.005))
    choice = _tune(family_dir, cheap, strong, validation, tolerance)
    tuned = [{"threshold": round(choice.threshold, 6)}, {"reach": round(choice.reach[1], 4)}]
    info = register_version(
        family_dir, name,
        {"cheap.onnx": family.model_path(cheap), "strong.onnx": family.model_path(strong)},
        accuracy=choice.accuracy, accuracy_source="validation (replaced below)", stages=tuned,
    )  # fmt: skip
    accuracy, exits = measure_variant(family_dir, name, *test)
    shares = [round(float(s), 4) for s in np.bincount(exits, minlength=3)[1:] / len(exits)]
    metadata = {"cheap": cheap, "strong": strong, "tolerance": tolerance,
                "test_exit_shares": shares}  # fmt: skip
    rewrite_version_file(info.path / str(info.version), {
        "accuracy": round(accuracy, 6),
        "accuracy_source": f"measured: top-1 on {len(test[1])} held-out rows",
        "metadata": metadata,
    })  # fmt: skip
    return {"version": info.version, "accuracy": accuracy, "threshold": choice.threshold,
            "test_exit_shares": shares}  # fmt: skip


def build_cascade(
    family_dir: Path,
    cheap: str,
    strong: str,
    *,
    name: str = "cascade",
    tolerance: float = 0.005,
    validation: tuple[FloatArray, LabelArray] | None = None,
    test: tuple[FloatArray, LabelArray] | None = None,
) -> dict[str, Any]:
    """Add the cascade variant `name` (cheap, then strong) to a digits-like family.

    The threshold is tuned on `validation` (default: the digits validation split) to keep
    accuracy within `tolerance` of `strong`'s there. Accuracy and exit shares are then
    measured on `test` (default: the digits test split). The served versions of both
    models are copied into the cascade's own version folder, so a later version of either
    does not silently change what the cascade's measured accuracy describes.
    """
    family = load_family(family_dir)
    if validation is None or test is None:
        x_train, y_train, x_test, y_test = load_digits_split()
        data = _fit_validation_split(x_train, y_train)
        validation = validation or (data.x_val.numpy(), data.y_val.numpy())
        test = test or (x_test, y_test)
    choice = _tune(family_dir, cheap, strong, validation, tolerance)
    folder = family_dir / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, variant in (("cheap.onnx", cheap), ("strong.onnx", strong)):
        shutil.copyfile(family.model_path(variant), folder / file_name)
    stages = (
        Stage("cheap.onnx", "logits", threshold=round(choice.threshold, 6)),
        Stage("strong.onnx", "logits", reach=round(choice.reach[1], 4)),
    )
    base = family.config.variants[strong]
    cascade = VariantConfig(
        name, 0.0, f"measured: top-1 on {len(test[1])} held-out rows", base.input,
        stages=stages,
        metadata={"cheap": cheap, "strong": strong, "tolerance": tolerance,
                  "validation_accuracy": round(choice.accuracy, 6)},
    )  # fmt: skip
    raw = family.config
    config = replace(raw, variants={**raw.variants, name: cascade})
    write_family_config(family_dir, config)
    accuracy, exits = measure_variant(family_dir, name, *test)
    shares = [round(float(s), 4) for s in np.bincount(exits, minlength=3)[1:] / len(exits)]
    measured = replace(cascade, accuracy=accuracy, metadata={**cascade.metadata,
                       "test_exit_shares": shares})  # fmt: skip
    write_family_config(family_dir, replace(config, variants={**raw.variants, name: measured}))
    return {"accuracy": accuracy, "threshold": choice.threshold, "test_exit_shares": shares}
