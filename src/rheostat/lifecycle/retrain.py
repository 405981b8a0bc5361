"""Retrain a family on new labelled data and register the results as new versions.

Used by `rheostat retrain` and, through it, by the server's drift policy. Every variant with
a training recipe is fine-tuned (see `retrain_digits_variant`), registered with its accuracy
measured on held-out new data, and every cascade built from retrained variants gets a new
version with its threshold tuned again. Nothing is served until the family is reloaded
(`POST /v2/repository/models/<family>/load`), which swaps versions with no request failed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rheostat.lifecycle.digits import (
    DIGITS_VARIANTS,
    WEIGHTS_FILE,
    holdout_split,
    retrain_digits_variant,
)
from rheostat.lifecycle.registry import register_version
from rheostat.repository.loader import MODEL_FILE, load_family

__all__ = ["RETRAINABLE", "retrain_family"]

RETRAINABLE = ("digits",)
"""Families with a training recipe."""


def retrain_family(
    family_dir: Path,
    x: np.ndarray,
    y: np.ndarray,
    *,
    variants: Sequence[str] | None = None,
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune and register `variants` (default: all with a recipe); returns per variant
    the new version, its accuracy on the held-out new data before and after, and its
    accuracy on the original test split."""
    from rheostat.lifecycle.conditional import refresh_cascade

    say = progress or (lambda message: None)
    family = load_family(family_dir)
    if family.name not in RETRAINABLE:
        raise ValueError(
            f"family {family.name!r} has no training recipe; retraining knows {list(RETRAINABLE)}"
        )
    names = list(variants) if variants else [v for v in DIGITS_VARIANTS if v in family.versions]
    unknown = sorted(set(names) - set(DIGITS_VARIANTS) - set(family.versions))
    if unknown or not names:
        raise ValueError(f"variants {names}: expected some of {sorted(family.versions)}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 64 or y.shape != (len(x),):
        raise ValueError(
            f"new data: x has shape {list(x.shape)} and y {list(y.shape)}; expected x [n, 64] "
            "raw pixels and y [n] labels 0..9"
        )
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rheostat-retrain-") as scratch:
        for name in names:
            say(f"retraining {family.name}.{name} on {len(y)} new rows ...")
            result = retrain_digits_variant(
                family_dir, name, x, y, Path(scratch) / name, epochs=epochs
            )
            files = {MODEL_FILE: result.folder / MODEL_FILE}
            if (result.folder / WEIGHTS_FILE).is_file():
                files[WEIGHTS_FILE] = result.folder / WEIGHTS_FILE
            info = register_version(
                family_dir, name, files, accuracy=result.accuracy,
                accuracy_source=result.accuracy_source, metadata=result.metadata,
            )  # fmt: skip
            report[name] = {
                "version": info.version,
                "accuracy": round(result.accuracy, 4),
                "before": round(result.before, 4),
                "clean_test_accuracy": round(result.original_accuracy, 4),
                "fine_tuned": result.fine_tuned,
            }
    _, _, x_hold, y_hold = holdout_split(x, y)
    half = len(y_hold) // 2
    for name, config in load_family(family_dir).config.variants.items():
        parts = {config.metadata.get("cheap"), config.metadata.get("strong")}
        if config.stages and parts & set(report) and None not in parts:
            say(f"tuning {family.name}.{name} again ...")
            report[name] = refresh_cascade(
                family_dir, name, (x_hold[:half], y_hold[:half]), (x_hold[half:], y_hold[half:])
            )
    return report
