"""The `digits` family: four small classifiers of scikit-learn's 8x8 handwritten digits.

Every variant takes the raw pixels (64 float32 values in 0..16, the scale `load_digits`
uses) as input `input` [batch, 64] and returns `logits` [batch, 10]; the division by 16
happens inside the exported model. Training is seeded, deterministic and runs on the CPU in a
few seconds. Accuracy is measured with ONNX Runtime on a stratified 30 % of the data set held
out from training and early stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from rheostat.lifecycle.quantize import export_onnx, ort_session, predict
from rheostat.repository.loader import MODEL_FILE, write_family_config
from rheostat.repository.schema import (
    BatchPolicyName,
    DynamicBatching,
    FamilyConfig,
    InputKind,
    QueuePolicy,
    TensorSpec,
    VariantConfig,
)

__all__ = [
    "DIGITS_VARIANTS",
    "WEIGHTS_FILE",
    "RetrainResult",
    "digits_family_config",
    "drift_digits",
    "drifted_digits_split",
    "holdout_split",
    "load_digits_split",
    "retrain_digits_variant",
    "train_digits_family",
    "train_digits_variant",
]

FAMILY = "digits"
SEED = 0
TEST_FRACTION = 0.3
VALIDATION_FRACTION = 0.15
PIXEL_MAX = 16.0
DIGITS_VARIANTS = ("mlp_tiny", "mlp_small", "cnn_small", "cnn_large")
EXPORT_ATOL = 1e-4
WEIGHTS_FILE = "weights.pt"
"""The torch weights beside each version's model.onnx: what `retrain` fine-tunes from."""

FloatArray = NDArray[np.float32]
LabelArray = NDArray[np.int64]


def load_digits_split() -> tuple[FloatArray, LabelArray, FloatArray, LabelArray]:
    """`(x_train, y_train, x_test, y_test)` of scikit-learn's digits (1797 images).

    Stratified, seed 0, 30 % held out (540 test images). `x` is float32 [n, 64] of raw
    pixel values 0..16; `y` is int64 class ids 0..9. The same call always gives the same split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float32)
    y = np.asarray(data.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y
    )
    return x_train, y_train, x_test, y_test


class _Scale(nn.Module):
    """Maps raw digits pixels (0..16) to 0..1 inside the exported graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 / PIXEL_MAX)


class _AsImage(nn.Module):
    """[batch, 64] -> [batch, 1, 8, 8] (a Reshape with a constant shape in ONNX)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 1, 8, 8)


def _mlp(hidden: int) -> nn.Module:
    return nn.Sequential(_Scale(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _cnn_small() -> nn.Module:
    return nn.Sequential(
        _Scale(),
        _AsImage(),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def _cnn_large() -> nn.Module:
    return nn.Sequential(
        _Scale(),
        _AsImage(),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@dataclass(frozen=True)
class _Recipe:
    build: Callable[[], nn.Module]  # a module taking raw [batch, 64] pixels
    epochs: int
    learning_rate: float
    shift_augment: bool  # also train on copies shifted by one pixel (helps CNNs, not MLPs)
    description: str


_RECIPES: dict[str, _Recipe] = {
    "mlp_tiny": _Recipe(lambda: _mlp(16), 40, 1e-2, False, "MLP 64-16-10"),
    "mlp_small": _Recipe(lambda: _mlp(64), 40, 1e-2, False, "MLP 64-64-10"),
    "cnn_small": _Recipe(_cnn_small, 10, 5e-3, True, "CNN conv16-pool-fc10"),
    "cnn_large": _Recipe(_cnn_large, 8, 2e-3, True, "CNN conv16-conv32-pool-fc64-fc10"),
}


def _shifted_copies(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`x` plus four copies moved one pixel up/down/left/right (zero fill); labels repeated."""
    images = x.view(-1, 8, 8)
    copies = [images]
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        shifted = torch.zeros_like(images)
        shifted[:, max(dy, 0) : 8 + min(dy, 0), max(dx, 0) : 8 + min(dx, 0)] = images[
            :, max(-dy, 0) : 8 + min(-dy, 0), max(-dx, 0) : 8 + min(-dx, 0)
        ]
        copies.append(shifted)
    return torch.cat(copies).view(-1, 64), y.repeat(len(copies))


@dataclass(frozen=True)
class _Data:
    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def _fit_validation_split(x_train: FloatArray, y_train: LabelArray) -> _Data:
    from sklearn.model_selection import train_test_split

    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train, y_train, test_size=VALIDATION_FRACTION, random_state=SEED, stratify=y_train
    )
    return _Data(
        torch.from_numpy(x_fit),
        torch.from_numpy(y_fit),
        torch.from_numpy(x_val),
        torch.from_numpy(y_val),
    )


Objective = Callable[[Any, torch.Tensor], torch.Tensor]
"""A training loss of a model's outputs against the labels."""


def _loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: Objective | None = None
) -> float:
    model.eval()
    with torch.no_grad():
        return float((objective or nn.functional.cross_entropy)(model(x), y))


def _epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    objective: Objective | None = None,
) -> None:
    """One pass over (x, y) in `order`, minimising `objective` (default: cross-entropy)."""
    model.train()
    loss = objective or nn.functional.cross_entropy
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        optimizer.zero_grad()
        torch.autograd.backward(loss(model(x[rows]), y[rows]))
        optimizer.step()


def _train(
    recipe: _Recipe,
    data: _Data,
    *,
    batch_size: int = 64,
    start: dict[str, torch.Tensor] | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
) -> nn.Module:
    """Adam + cross-entropy; returns the model with the weights of the epoch whose validation
    loss was lowest, in eval mode.

    Seeded (initialisation, shuffling, dropout) without touching torch's global RNG state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = recipe.build()
        if start is not None:  # fine-tune from these weights
            model.load_state_dict(start)
        x_fit, y_fit = data.x_fit, data.y_fit
        if recipe.shift_augment:
            x_fit, y_fit = _shifted_copies(x_fit, y_fit)
        rate = learning_rate or recipe.learning_rate
        optimizer = torch.optim.Adam(model.parameters(), lr=rate, weight_decay=1e-4)
        generator = torch.Generator().manual_seed(SEED)
        best_loss, best_state = float("inf"), _snapshot(model)
        for _ in range(epochs or recipe.epochs):
            order = torch.randperm(len(x_fit), generator=generator)
            _epoch(model, optimizer, x_fit, y_fit, order, batch_size)
            loss = _loss(model, data.x_val, data.y_val)
            if loss < best_loss:
                best_loss, best_state = loss, _snapshot(model)
        model.load_state_dict(best_state)
        return model.eval()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _export_and_verify(model: nn.Module, path: Path, x_test: FloatArray) -> FloatArray:
    """Export `model` to `path` (and its weights to WEIGHTS_FILE beside it); return ONNX
    Runtime's logits on `x_test`.

    Raises RuntimeError when they differ from torch's by more than EXPORT_ATOL.
    """
    export_onnx(model, torch.zeros(1, 64), path)
    torch.save(model.state_dict(), path.with_name(WEIGHTS_FILE))
    logits: FloatArray = predict(ort_session(path), x_test)
    with torch.no_grad():
        expected = model(torch.from_numpy(x_test)).numpy()
    worst = float(np.max(np.abs(logits - expected)))
    if worst > EXPORT_ATOL:
        raise RuntimeError(f"{path}: ONNX Runtime differs from torch by {worst:.2e}")
    return logits


def train_digits_variant(
    name: str, family_dir: Path, split: tuple[FloatArray, LabelArray, FloatArray, LabelArray]
) -> VariantConfig:
    """Train, export (to `<family_dir>/<name>/1/model.onnx`) and measure one variant."""
    recipe = _RECIPES[name]
    x_train, y_train, x_test, y_test = split
    model = _train(recipe, _fit_validation_split(x_train, y_train))
    logits = _export_and_verify(model, family_dir / name / "1" / MODEL_FILE, x_test)
    correct = int(np.sum(logits.argmax(axis=1) == y_test))
    return VariantConfig(
        name=name,
        accuracy=correct / len(y_test),
        accuracy_source=(
            f"measured: top-1 on {len(y_test)} held-out scikit-learn digits (seed {SEED})"
        ),
        input=TensorSpec("input", "TYPE_FP32", (64,)),
        metadata={
            "architecture": recipe.description,
            "parameters": sum(p.numel() for p in model.parameters()),
            "test_size": len(y_test),
            "test_correct": correct,
            "train_size": len(y_train),
        },
    )


def digits_family_config(variants: dict[str, VariantConfig]) -> FamilyConfig:
    """The `digits` FamilyConfig holding `variants`."""
    return FamilyConfig(
        name=FAMILY,
        description="8x8 handwritten digits (scikit-learn), raw pixel values 0..16 in",
        max_batch_size=64,
        input_kind=InputKind.TENSOR,
        output=TensorSpec("logits", "TYPE_FP32", (10,)),
        variants=variants,
        slo_ms=50.0,
        labels=tuple(str(d) for d in range(10)),
        dynamic_batching=DynamicBatching(
            policy=BatchPolicyName.DEADLINE_AWARE,
            max_queue_delay_microseconds=1000,
            preferred_batch_size=(16, 32),
            default_queue_policy=QueuePolicy(max_queue_size=256),
        ),
    )


def train_digits_family(
    family_dir: Path,
    *,
    variants: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train and export `variants` (default: all four) into `family_dir`, write config.yaml.

    Returns a report: per variant its accuracy, test size and parameter count.
    Raises ValueError for an unknown variant name.
    """
    names = tuple(DIGITS_VARIANTS if variants is None else variants)
    unknown = sorted(set(names) - set(_RECIPES))
    if unknown:
        raise ValueError(f"unknown digits variants {unknown}; expected some of {DIGITS_VARIANTS}")
    split = load_digits_split()
    configs: dict[str, VariantConfig] = {}
    for name in names:
        if progress is not None:
            progress(f"training digits/{name} ...")
        configs[name] = train_digits_variant(name, family_dir, split)
    write_family_config(family_dir, digits_family_config(configs))
    return {
        name: {"accuracy": c.accuracy, "accuracy_source": c.accuracy_source, **c.metadata}
        for name, c in configs.items()
    }


def drift_digits(x: FloatArray, seed: int = 1) -> FloatArray:
    """The digits as an ageing sensor would see them: contrast down to 45 %, a dark level of
    6 (of 16) with noise, and the image shifted one pixel right (a knocked mount).

    Deterministic for a seed. Models trained on clean digits lose most of their accuracy
    on these; a fine-tune on a few hundred labelled drifted images brings it back.
    """
    images = x.reshape(-1, 8, 8)
    shifted = np.zeros_like(images)
    shifted[:, :, 1:] = images[:, :, :-1]
    noise = np.random.default_rng(seed).normal(0.0, 1.0, shifted.shape)
    drifted = np.clip(0.45 * shifted + 6.0 + noise, 0.0, PIXEL_MAX)
    return np.asarray(drifted.reshape(-1, 64), dtype=np.float32)


def drifted_digits_split() -> tuple[FloatArray, LabelArray, FloatArray, LabelArray]:
    """`load_digits_split()` under `drift_digits`: the train part is what a deployment would
    collect and label after the drift; the test part measures the recovery."""
    x_train, y_train, x_test, y_test = load_digits_split()
    return drift_digits(x_train, seed=1), y_train, drift_digits(x_test, seed=2), y_test


def holdout_split(
    x: FloatArray, y: LabelArray
) -> tuple[FloatArray, LabelArray, FloatArray, LabelArray]:
    """(x_fit, y_fit, x_held_out, y_held_out): new data split as retraining splits it, 30 %
    held out, stratified where every class has two rows, seed 0."""
    from sklearn.model_selection import train_test_split

    stratify = y if len(np.unique(y)) > 1 and np.bincount(y).min() >= 2 else None
    x_fit, x_hold, y_fit, y_hold = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=stratify
    )
    return x_fit, y_fit, x_hold, y_hold


@dataclass(frozen=True)
class RetrainResult:
    variant: str
    folder: Path  # holds model.onnx and weights.pt, ready to register
    accuracy: float  # on the held-out part of the new data
    accuracy_source: str
    before: float  # the served version on the same held-out part
    original_accuracy: float  # the new version on the clean test split
    fine_tuned: bool  # from the served version's weights (else trained from scratch)
    metadata: dict[str, Any]


def retrain_digits_variant(
    family_dir: Path,
    variant: str,
    x_new: FloatArray,
    y_new: LabelArray,
    output: Path,
    *,
    epochs: int | None = None,
) -> RetrainResult:
    """Fine-tune the served version of a digits variant on new labelled data.

    30 % of the new data (stratified, seed 0) is held out to measure the result; the rest is
    mixed with the original training split (so the variant keeps what it knew) and trained
    from the served version's weights, or from scratch when it has none. The model and its
    weights are written to `output`; register them with `rheostat.lifecycle.registry`.
    """
    from rheostat.repository.loader import load_family

    if variant not in _RECIPES:
        raise ValueError(f"unknown digits variant {variant!r}; expected one of {DIGITS_VARIANTS}")
    if x_new.ndim != 2 or x_new.shape[1] != 64 or len(x_new) != len(y_new):
        raise ValueError(
            f"new data: x has shape {list(x_new.shape)} and y {list(y_new.shape)}; expected "
            "x [n, 64] raw pixels and y [n] labels 0..9"
        )
    if len(x_new) < 50 or not set(np.unique(y_new).tolist()) <= set(range(10)):
        raise ValueError(f"new data: need at least 50 rows labelled 0..9, got {len(x_new)}")
    family = load_family(family_dir)
    served = family.model_path(variant)
    weights = served.with_name(WEIGHTS_FILE)
    x_fit, y_fit, x_hold, y_hold = holdout_split(x_new, y_new)
    x_old, y_old, x_test, y_test = load_digits_split()
    mixed_x = np.concatenate([x_fit, x_old]).astype(np.float32)
    mixed_y = np.concatenate([y_fit, y_old]).astype(np.int64)
    recipe = _RECIPES[variant]
    start = torch.load(weights, weights_only=True) if weights.is_file() else None
    model = _train(
        recipe,
        _fit_validation_split(mixed_x, mixed_y),
        start=start,
        epochs=epochs or (max(recipe.epochs // 2, 3) if start is not None else recipe.epochs),
        learning_rate=recipe.learning_rate / 2 if start is not None else None,
    )
    logits = _export_and_verify(model, output / MODEL_FILE, x_hold)
    accuracy = float(np.mean(logits.argmax(axis=1) == y_hold))
    before = float(np.mean(predict(ort_session(served), x_hold).argmax(axis=1) == y_hold))
    clean = predict(ort_session(output / MODEL_FILE), x_test).argmax(axis=1)
    return RetrainResult(
        variant=variant,
        folder=output,
        accuracy=accuracy,
        accuracy_source=(
            f"measured: top-1 on {len(y_hold)} held-out rows of the retraining data (seed {SEED})"
        ),
        before=before,
        original_accuracy=float(np.mean(clean == y_test)),
        fine_tuned=start is not None,
        metadata={
            "retrained_from_version": family.served_version(variant),
            "fine_tuned": start is not None,
            "new_rows": len(x_new),
            "clean_test_accuracy": round(float(np.mean(clean == y_test)), 6),
        },
    )
