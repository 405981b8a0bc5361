"""Proteus' published profiles (`aggregate_profiled.csv`) as planner variants.

The CSV has one row per (Model, Accel, batchsize) with latency percentiles in milliseconds
and the model's accuracy. Accelerators map to device types as in the paper's cluster; the
data labels the paper's V100 as `onnxruntime_gpu_ampere`. Quirks handled: a repeated
(Model, Accel, batchsize) row replaces the earlier one (the last wins), and a row with an
empty latency in the chosen column is skipped (some rows also lack `Trials`).

Families come from `variants_dir` when given (Proteus' `traces/model_variants/<family>` files,
lines `variant_name,normalized_accuracy`; CSV models absent from every file are dropped),
else from the model name (`family_of`). Accuracy is `Normalized_Accuracy / 100`.

The data is licensed for comparison only; nothing in rheostat ships it.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from rheostat.planning.problem import VariantSpec

__all__ = ["ACCEL_DEVICE_TYPES", "LATENCY_COLUMNS", "family_of", "load_proteus_profiles"]

ACCEL_DEVICE_TYPES = {
    "onnxruntime_cpu": "cpu",
    "onnxruntime_gpu_pascal": "1080ti",
    "onnxruntime_gpu_ampere": "v100",
}
LATENCY_COLUMNS = ("50th_pct", "90th_pct", "avg_latency(ms)", "Min", "Max")
_REQUIRED = ("Model", "Accel", "batchsize", "Normalized_Accuracy")
# Leading letters of a model name that do not name their family by themselves.
_FAMILY_ALIASES = {"roberta": "bert", "albert": "bert", "yolov": "yolo", "gpt": "gpt2", "t": "t5"}


def family_of(model: str) -> str:
    """Family of a Proteus model name: the leading letters of its last path component,
    aliased (`prajjwal1/bert-mini` -> bert, `roberta-base` -> bert, `yolov5m` -> yolo)."""
    base = model.rsplit("/", 1)[-1]
    match = re.match(r"[A-Za-z]+", base)
    if match is None:
        raise ValueError(f"model name {model!r} does not start with a letter")
    stem = match.group(0).lower()
    return _FAMILY_ALIASES.get(stem, stem)


def load_proteus_profiles(
    csv_path: Path, variants_dir: Path | None = None, column: str = "50th_pct"
) -> tuple[VariantSpec, ...]:
    """Variants from the CSV, sorted by (family, name); latencies in seconds."""
    if column not in LATENCY_COLUMNS:
        raise ValueError(f"column {column!r} is not a latency column; use one of {LATENCY_COLUMNS}")
    latency, accuracy = _read_rows(csv_path, column)
    families = _families_from(variants_dir) if variants_dir is not None else None
    specs = []
    for model in sorted(latency):
        family = family_of(model) if families is None else families.get(model)
        if family is not None:
            points = {t: dict(p) for t, p in latency[model].items()}
            specs.append(VariantSpec(family, model, accuracy[model], points))
    return tuple(sorted(specs, key=lambda v: v.key))


def _read_rows(
    csv_path: Path, column: str
) -> tuple[dict[str, dict[str, dict[int, float]]], dict[str, float]]:
    latency: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    accuracy: dict[str, float] = {}
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (*_REQUIRED, column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path} lacks columns {missing}")
        for row in reader:
            device_type = _device_type(row["Accel"], csv_path)
            accuracy[row["Model"]] = min(float(row["Normalized_Accuracy"]) / 100.0, 1.0)
            if row[column].strip():
                latency[row["Model"]][device_type][int(row["batchsize"])] = float(row[column]) / 1e3
    return latency, accuracy


def _device_type(accel: str, csv_path: Path) -> str:
    if accel not in ACCEL_DEVICE_TYPES:
        raise ValueError(
            f"{csv_path}: unknown Accel {accel!r}; known: {sorted(ACCEL_DEVICE_TYPES)}"
        )
    return ACCEL_DEVICE_TYPES[accel]


def _families_from(variants_dir: Path) -> dict[str, str]:
    """Model -> family from the files `<variants_dir>/<family>` (`name,accuracy` lines)."""
    families: dict[str, str] = {}
    for path in sorted(p for p in variants_dir.iterdir() if p.is_file()):
        for line in path.read_text().splitlines():
            if line.strip():
                families[line.split(",", 1)[0].strip()] = path.name
    return families
