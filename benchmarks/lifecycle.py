"""Lifecycle and conditional execution, measured: drift and retraining, the multi-exit network's
exits, the cascade against its two models, and int8 copies.

Runs on a copy of a model repository (`make repository` builds one) and prints Markdown
tables. Latencies are medians of `--repeats` runs through the server's own backend
(`OnnxBackend`, one thread, pinned to one core where there are two), all variants timed
side by side in one run; energy per item is the device's active power (the default
estimate of 6 W per core, or `--active-w`) times the item's share of its batch.

    .venv/bin/python benchmarks/lifecycle.py --model-repository model_repository
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rheostat.backends.onnx import OnnxBackend, load_spec
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.work import Payload, PayloadKind
from rheostat.lifecycle.conditional import measure_variant
from rheostat.lifecycle.digits import drifted_digits_split, load_digits_split
from rheostat.lifecycle.optimize import optimize_variant
from rheostat.lifecycle.retrain import retrain_family
from rheostat.repository import load_family


def _core() -> int:
    cores = sorted(os.sched_getaffinity(0))
    return cores[1] if len(cores) > 1 else cores[0]


def timed(
    family_dir: Path, variants: list[str], x: np.ndarray, repeats: int
) -> dict[tuple[str, int], float]:
    """Per variant and batch size (1, 64): median ms per batch on real test rows (so staged
    variants exit where the data makes them), runs interleaved across variants."""
    family = load_family(family_dir)
    backend = OnnxBackend(Device("bench", DeviceKind.CPU, (_core(),)))
    specs = {v: load_spec(family, v) for v in variants}
    for spec in specs.values():
        backend.load(spec)
    rng = np.random.default_rng(0)
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for batch in (1, 64):
            rows = x[rng.choice(len(x), batch, replace=False)]
            payloads = [Payload(PayloadKind.TENSOR, row) for row in rows]
            for name, spec in specs.items():
                backend.run(spec.key, payloads)  # warm
                start = time.perf_counter()
                backend.run(spec.key, payloads)
                times.setdefault((name, batch), []).append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def exits_table(repo: Path, repeats: int, active_w: float) -> None:
    family_dir = repo / "digits_exits"
    family = load_family(family_dir)
    _, _, x_test, y_test = load_digits_split()
    names = list(family.config.variants)
    ms = timed(family_dir, names, x_test, repeats)
    print("\n## Multi-exit digits network (digits_exits): exit vs latency vs accuracy\n")
    print(
        "| variant | accuracy | ms, batch 1 | ms per batch of 64 | mJ per item (b=64) | rows leaving at exit 1/2/3 |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name in names:
        accuracy, exits = measure_variant(family_dir, name, x_test, y_test)
        shares = (
            "" if not exits.any() else " / ".join(f"{np.mean(exits == k):.0%}" for k in (1, 2, 3))
        )
        energy = active_w * ms[(name, 64)] / 64
        print(
            f"| {name} | {accuracy:.4f} | {ms[(name, 1)]:.3f} | {ms[(name, 64)]:.3f} "
            f"| {energy:.3f} | {shares} |"
        )


def cascade_table(repo: Path, repeats: int, active_w: float) -> None:
    family_dir = repo / "digits"
    _, _, x_test, y_test = load_digits_split()
    names = ["mlp_tiny", "cnn_large", "cascade"]
    ms = timed(family_dir, names, x_test, repeats)
    threshold = load_family(family_dir).config.variants["cascade"].stages[0].threshold
    print(
        f"\n## Cascade (digits.cascade: mlp_tiny, then cnn_large below confidence {threshold:.3f})\n"
    )
    print(
        "| variant | accuracy (540 test digits) | ms, batch 1 | ms per batch of 64 | cost vs cnn_large (b=64) | mJ per item (b=64) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        accuracy, exits = measure_variant(family_dir, name, x_test, y_test)
        note = f" ({np.mean(exits == 1):.0%} answered by mlp_tiny)" if exits.any() else ""
        print(
            f"| {name}{note} | {accuracy:.4f} | {ms[(name, 1)]:.3f} | {ms[(name, 64)]:.3f} "
            f"| {ms[(name, 64)] / ms[('cnn_large', 64)]:.2f} | {active_w * ms[(name, 64)] / 64:.4f} |"
        )


def retrain_table(repo: Path) -> None:
    family_dir = repo / "digits"
    x_new, y_new, x_drift, y_drift = drifted_digits_split()
    _, _, x_test, y_test = load_digits_split()
    names = ["mlp_tiny", "mlp_small", "cnn_small", "cnn_large", "cascade"]
    before = {n: measure_variant(family_dir, n, x_drift, y_drift)[0] for n in names}
    clean_before = {n: measure_variant(family_dir, n, x_test, y_test)[0] for n in names}
    start = time.perf_counter()
    report = retrain_family(family_dir, x_new, y_new)
    seconds = time.perf_counter() - start
    print(
        f"\n## Drift and retraining (digits; {len(y_new)} labelled drifted rows, "
        f"{seconds:.1f} s to retrain, register and retune everything)\n"
    )
    print(
        "| variant | drifted test, before | drifted test, after | clean test, before "
        "| clean test, after | new version |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        after = measure_variant(family_dir, name, x_drift, y_drift)[0]
        clean_after = measure_variant(family_dir, name, x_test, y_test)[0]
        print(
            f"| {name} | {before[name]:.4f} | {after:.4f} | {clean_before[name]:.4f} "
            f"| {clean_after:.4f} | {report[name]['version']} |"
        )


def int8_table(repo: Path) -> None:
    print("\n## int8 copies (`rheostat optimize`)\n")
    print(
        "| variant | float accuracy | int8 accuracy | int8 speedup, batch 1 | batch 32 | registered |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for variant in ("mlp_small", "cnn_large"):
        r = optimize_variant(repo / "digits", variant)
        s = r["speedup_vs_float"]
        outcome = "yes" if r["registered"] else f"no: {r['why_not']}"
        print(
            f"| digits.{variant} | {r['float_accuracy']} | {r['int8_accuracy']} | {s['1']} "
            f"| {s['32']} | {outcome} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--active-w", type=float, default=6.0, help="watts of the busy core")
    args = parser.parse_args()
    if not (args.model_repository / "digits_exits").is_dir():
        raise SystemExit(f"{args.model_repository}: no digits_exits family; run make repository")
    with tempfile.TemporaryDirectory(prefix="rheostat-bench-") as scratch:
        repo = Path(scratch)
        for family in ("digits", "digits_exits"):
            shutil.copytree(args.model_repository / family, repo / family)
        print(
            f"# rheostat lifecycle benchmark (one core, {args.repeats} runs per median, "
            f"{args.active_w} W active)"
        )
        exits_table(repo, args.repeats, args.active_w)
        cascade_table(repo, args.repeats, args.active_w)
        int8_table(repo)
        retrain_table(repo)


if __name__ == "__main__":
    main()
