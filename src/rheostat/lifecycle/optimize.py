"""`rheostat optimize`: an int8 copy of a variant, measured before it is registered.

The float variant's served version is quantized statically (ONNX Runtime's tools, see
`quantize_int8`) with the family's training inputs as calibration data; accuracy is
measured on the held-out test split and speed side by side with the float model at batch
sizes 1 and 32. The copy becomes the new variant `<variant>_int8` only when it loses at most
`max_drop` accuracy and is faster than the float model at one of those batch sizes by
`min_speedup`: an int8 copy that is no faster only adds a variant the planner never wants
(tiny models often are: their int8 kernels cost more than they save). The server profiles
it when it loads it, and the planner then weighs it like any variant. Families with a known
data set only (the digits families); the image family's int8 copies are made by the
repository build.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rheostat.lifecycle.digits import load_digits_split
from rheostat.lifecycle.quantize import compare_latency, ort_session, predict, quantize_int8
from rheostat.lifecycle.registry import add_variant
from rheostat.repository.loader import load_family

__all__ = ["optimize_variant"]

DATASETS = ("digits", "digits_exits")


def optimize_variant(
    family_dir: Path, variant: str, *, max_drop: float = 0.01, min_speedup: float = 1.0
) -> dict[str, Any]:
    family = load_family(family_dir)
    if family.name not in DATASETS:
        raise ValueError(
            f"family {family.name!r}: optimize knows calibration data for {list(DATASETS)} only"
        )
    config = family.config.variants.get(variant)
    if config is None or config.stages:
        plain = sorted(v for v, c in family.config.variants.items() if not c.stages)
        raise ValueError(f"variant {variant!r}: expected one of {plain}")
    if f"{variant}_int8" in family.config.variants:  # before the quantization, not after
        raise ValueError(f"{family.name}.{variant}_int8 exists already; register a version of it")
    x_train, _, x_test, y_test = load_digits_split()
    source = family.model_path(variant)
    with tempfile.TemporaryDirectory(prefix="rheostat-optimize-") as scratch:
        quantized = quantize_int8(source, Path(scratch) / "model.onnx", x_train[:512])
        float_acc = float(np.mean(predict(ort_session(source), x_test).argmax(1) == y_test))
        int8_acc = float(np.mean(predict(ort_session(quantized), x_test).argmax(1) == y_test))
        speed = {
            b: compare_latency(source, quantized, x_test, batch_size=b, threads=1).speedup
            for b in (1, 32)
        }
        report: dict[str, Any] = {
            "variant": f"{family.name}.{variant}_int8",
            "float_accuracy": round(float_acc, 4),
            "int8_accuracy": round(int8_acc, 4),
            "speedup_vs_float": {str(b): round(s, 3) for b, s in speed.items()},
            "registered": False,
        }
        if float_acc - int8_acc > max_drop:
            report["why_not"] = (
                f"int8 loses {float_acc - int8_acc:.4f} accuracy, more than --max-drop {max_drop}"
            )
            return report
        if max(speed.values()) < min_speedup:
            report["why_not"] = (
                f"int8 is no faster (speedup {max(speed.values()):.2f} at best, below "
                f"--min-speedup {min_speedup})"
            )
            return report
        entry = {
            "accuracy": round(int8_acc, 6),
            "accuracy_source": f"measured: top-1 on {len(y_test)} held-out digits, int8",
            "input": {"name": config.input.name, "data_type": config.input.data_type,
                      "dims": list(config.input.dims)},
            "metadata": {"quantized_from": variant, "speedup_vs_float": report["speedup_vs_float"]},
        }  # fmt: skip
        if config.output is not None:
            entry["output"] = config.output
        add_variant(family_dir, entry, f"{variant}_int8", quantized)
        report["registered"] = True
    return report
