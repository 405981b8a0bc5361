"""Registering model versions and variants in a repository, and rolling versions back.

A registered version is a new numbered folder beside the old ones, holding the model file(s)
and `version.yaml` (its measured accuracy, how it was measured, and where it came from). The
highest version is the one served, so registering publishes and `rollback` retires: the
newest version's folder is renamed `.retired-<N>` (kept for inspection, never served) and the
one below it is served again. A running server picks either up on `POST
/v2/repository/models/<family>/load`, which swaps versions with no request failed.

Folders appear atomically: files are written into a hidden staging folder that is renamed
into place, so a server reloading meanwhile never sees half a version.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rheostat.clock import unix_time_s
from rheostat.errors import RepositoryError
from rheostat.repository.loader import CONFIG_FILE, MODEL_FILE, VERSION_FILE, load_family

__all__ = [
    "RETIRED_PREFIX",
    "VersionInfo",
    "add_variant",
    "register_version",
    "rewrite_version_file",
    "rollback",
]

RETIRED_PREFIX = ".retired-"


@dataclass(frozen=True)
class VersionInfo:
    family: str
    variant: str
    version: int
    accuracy: float
    path: Path


def _numbers(variant_dir: Path) -> list[int]:
    """Every version number ever used under `variant_dir`, served or retired."""
    numbers = []
    for p in variant_dir.iterdir() if variant_dir.is_dir() else ():
        name = p.name.removeprefix(RETIRED_PREFIX)
        if p.is_dir() and name.isdigit():
            numbers.append(int(name))
    return sorted(numbers)


def _publish(
    variant_dir: Path, files: Mapping[str, Path], info: dict[str, Any], check: Callable[[], None]
) -> int:
    """Copy `files` (name in the folder -> source) and `version.yaml` into the next version,
    after opening every ONNX file with ONNX Runtime; then run `check` (load the family) and
    withdraw the version if it fails. Two registrations at once get different numbers."""
    variant_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=variant_dir))
    try:
        for name, source in files.items():
            shutil.copyfile(source, staging / name)
            if name.endswith(".onnx"):
                _open(staging / name, source)
        (staging / VERSION_FILE).write_text(yaml.safe_dump(info, sort_keys=False))
        staging.chmod(0o755)
        while True:
            version = max(_numbers(variant_dir), default=0) + 1
            try:
                staging.rename(variant_dir / str(version))
                break
            except OSError:  # another registration took that number first
                if not (variant_dir / str(version)).exists():
                    raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        check()
    except BaseException:
        shutil.rmtree(variant_dir / str(version), ignore_errors=True)
        raise
    return version


def _open(path: Path, source: Path) -> None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ValueError(f"{source}: ONNX Runtime cannot open it: {exc}") from None


def register_version(
    family_dir: Path,
    variant: str,
    model: Path | Mapping[str, Path],
    *,
    accuracy: float,
    accuracy_source: str,
    metadata: Mapping[str, Any] | None = None,
    stages: Sequence[Mapping[str, float]] | None = None,
) -> VersionInfo:
    """Publish a new version of an existing variant; it is served from the next (re)load.

    `model` is the new `model.onnx` (other files may come along, e.g. `weights.pt`), or for
    a staged variant its stage files by name, with `stages` its tuned thresholds and reach.
    The family is loaded again afterwards, so a broken registration fails here, naming the
    file.
    """
    family = load_family(family_dir)
    config = family.config.variants.get(variant)
    if config is None:
        raise RepositoryError(
            family_dir / CONFIG_FILE,
            f"variants.{variant}",
            f"no such variant; {family.name} has {sorted(family.config.variants)}",
        )
    files = dict(model) if isinstance(model, Mapping) else {MODEL_FILE: model}
    needed = {s.model for s in config.stages} or {MODEL_FILE}
    if not needed <= set(files):
        raise ValueError(
            f"{family.name}.{variant} needs files {sorted(needed)}, got {sorted(files)}"
        )
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy {accuracy} must be in [0, 1]")
    info = {
        "accuracy": round(float(accuracy), 6),
        "accuracy_source": accuracy_source,
        "metadata": {**(metadata or {}), "registered_unix_s": round(unix_time_s())},
    }
    if stages is not None:
        info["stages"] = [dict(s) for s in stages]
    version = _publish(family_dir / variant, files, info, lambda: _check(family_dir))
    return VersionInfo(family.name, variant, version, float(accuracy), family_dir / variant)


def add_variant(family_dir: Path, entry: Mapping[str, Any], name: str, model: Path) -> VersionInfo:
    """Add a new variant `name` (e.g. an int8 copy) with its `config.yaml` entry and version 1.

    `entry` is the variant's mapping as `config.yaml` holds it (accuracy, accuracy_source,
    input, ...). The config file is rewritten with the entry added and nothing else changed.
    """
    config_path = family_dir / CONFIG_FILE
    original = config_path.read_text()
    data = yaml.safe_load(original)
    if name in data.get("variants", {}):
        raise ValueError(f"{data.get('name')}.{name} exists already; register a version of it")
    if (family_dir / name).exists():
        raise ValueError(f"{family_dir / name} exists already")
    data["variants"][name] = dict(entry)

    def publish_config() -> None:  # the version exists by now: the config may name it
        _write_atomically(config_path, yaml.safe_dump(data, sort_keys=False, width=100))
        try:
            load_family(family_dir)
        except Exception:
            _write_atomically(config_path, original)
            raise

    try:
        _publish(
            family_dir / name,
            {MODEL_FILE: model},
            {"accuracy": entry["accuracy"], "accuracy_source": entry["accuracy_source"]},
            publish_config,
        )
    except BaseException:
        shutil.rmtree(family_dir / name, ignore_errors=True)
        raise
    return VersionInfo(data["name"], name, 1, float(entry["accuracy"]), family_dir / name)


def _check(family_dir: Path) -> None:
    load_family(family_dir)


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.new")
    partial.write_text(text)
    partial.replace(path)


def rewrite_version_file(folder: Path, changes: Mapping[str, Any]) -> None:
    """Update a version's `version.yaml` in place, atomically (e.g. with a measurement made
    after registering)."""
    path = folder / VERSION_FILE
    data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    for key, value in changes.items():
        old = data.get(key)
        data[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    _write_atomically(path, yaml.safe_dump(data, sort_keys=False))


def rollback(family_dir: Path, variant: str) -> tuple[int, int]:
    """Retire the served version of `variant`; returns (retired, now served).

    Refuses to retire the only version left.
    """
    family = load_family(family_dir)
    if variant not in family.versions:
        raise RepositoryError(
            family_dir / CONFIG_FILE,
            f"variants.{variant}",
            f"no such variant; {family.name} has {sorted(family.versions)}",
        )
    versions = family.versions[variant]
    if len(versions) < 2:
        raise ValueError(
            f"{family.name}.{variant} has only version {versions[0]}; nothing to roll back to"
        )
    served = versions[-1]
    source = family_dir / variant / str(served)
    source.rename(family_dir / variant / f"{RETIRED_PREFIX}{served}")
    return served, versions[-2]
