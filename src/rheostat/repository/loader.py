"""Reading and writing a model repository on disk.

Layout (Triton-like, with one more level for variants)::

    <repository>/
      <family>/
        config.yaml            FamilyConfig (see schema.py)
        labels.txt             optional, one class name per line (`labels: labels.txt`)
        <variant>/
          <version>/model.onnx numbered versions; the highest is served
          <version>/version.yaml optional: the version's own accuracy, source and metadata
                               (written by `rheostat register`); it overrides config.yaml's
          .retired-<version>/  a version rolled back (`rheostat rollback`): never served

A staged variant (a cascade, a multi-exit network's adaptive exit) holds one file per stage
in each version folder instead of `model.onnx`.

Every problem raises `RepositoryError(file, field, what was expected)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rheostat.errors import RepositoryError
from rheostat.repository.schema import (
    BatchPolicyName,
    DynamicBatching,
    FamilyConfig,
    ImagePreprocessing,
    InputKind,
    InstanceGroup,
    QueuePolicy,
    Stage,
    TensorSpec,
    VariantConfig,
)

__all__ = [
    "CONFIG_FILE",
    "MODEL_FILE",
    "VERSION_FILE",
    "Family",
    "Repository",
    "family_to_dict",
    "load_family",
    "load_repository",
    "write_family_config",
]

_T = TypeVar("_T")

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.onnx"
VERSION_FILE = "version.yaml"


@dataclass(frozen=True)
class Family:
    """A loaded family: its config plus the model file of each variant's served version."""

    config: FamilyConfig
    path: Path
    versions: dict[str, tuple[int, ...]]  # variant -> available versions, ascending

    @property
    def name(self) -> str:
        return self.config.name

    def served_version(self, variant: str) -> int:
        return self.versions[variant][-1]

    def version_dir(self, variant: str, version: int | None = None) -> Path:
        v = self.served_version(variant) if version is None else version
        return self.path / variant / str(v)

    def model_path(self, variant: str, version: int | None = None) -> Path:
        """The model file (a staged variant's: its first stage's)."""
        stages = self.config.variants[variant].stages
        return self.version_dir(variant, version) / (stages[0].model if stages else MODEL_FILE)


@dataclass(frozen=True)
class Repository:
    path: Path
    families: dict[str, Family]


class _Reader:
    """Walks a parsed YAML mapping, turning every problem into a RepositoryError."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field_name: str, problem: str) -> RepositoryError:
        return RepositoryError(self.path, field_name, problem)

    def mapping(self, value: object, field_name: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(field_name, f"expected a mapping, got {type(value).__name__}")
        return value

    def get(
        self, data: Mapping[str, Any], key: str, prefix: str, kind: type | tuple[type, ...]
    ) -> Any:
        name = f"{prefix}{key}"
        if key not in data:
            raise self.fail(name, "is required")
        return self.typed(data[key], name, kind)

    def typed(self, value: object, name: str, kind: type | tuple[type, ...]) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(name, f"expected {_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(name, f"expected {_names(kinds)}, got {value!r}")
        return value

    def build(self, cls: type[_T], where: str, /, **kwargs: Any) -> _T:
        """Construct a schema dataclass; its ValueError becomes a RepositoryError."""
        try:
            return cls(**kwargs)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def unknown(self, data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        extra = sorted(set(data) - allowed)
        if extra:
            raise self.fail(
                f"{prefix}{extra[0]}", f"unknown field; expected one of {sorted(allowed)}"
            )


def _names(kinds: tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        bool: "true/false",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _tensor(r: _Reader, value: object, name: str) -> TensorSpec:
    data = r.mapping(value, name)
    r.unknown(data, {"name", "data_type", "dims"}, f"{name}.")
    dims = r.get(data, "dims", f"{name}.", list)
    for i, d in enumerate(dims):
        r.typed(d, f"{name}.dims[{i}]", int)
    return r.build(
        TensorSpec,
        name,
        name=r.get(data, "name", f"{name}.", str),
        data_type=r.get(data, "data_type", f"{name}.", str),
        dims=tuple(dims),
    )


def _floats(r: _Reader, value: object, name: str) -> tuple[float, ...]:
    items = r.typed(value, name, list)
    return tuple(float(r.typed(x, f"{name}[{i}]", (int, float))) for i, x in enumerate(items))


def _preprocessing(r: _Reader, value: object, name: str) -> ImagePreprocessing:
    data = r.mapping(value, name)
    r.unknown(data, {"crop_px", "resize_shorter_px", "mean", "std", "layout"}, f"{name}.")
    kwargs: dict[str, Any] = {
        "crop_px": r.get(data, "crop_px", f"{name}.", int),
        "resize_shorter_px": r.get(data, "resize_shorter_px", f"{name}.", int),
    }
    for key in ("mean", "std"):
        if key in data:
            kwargs[key] = _floats(r, data[key], f"{name}.{key}")
    if "layout" in data:
        kwargs["layout"] = r.typed(data["layout"], f"{name}.layout", str)
    return r.build(ImagePreprocessing, name, **kwargs)


_VARIANT_FIELDS = {
    "accuracy", "accuracy_source", "input", "preprocessing", "metadata", "stages", "output",
    "jpeg_accuracy",
}  # fmt: skip
_STAGE_FIELDS = {"model", "output", "threshold", "carry", "reach"}


def _stages(r: _Reader, value: object, name: str) -> tuple[Stage, ...]:
    items = r.typed(value, name, list)
    stages = []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        data = r.mapping(item, where)
        r.unknown(data, _STAGE_FIELDS, f"{where}.")
        kwargs: dict[str, Any] = {
            "model": r.get(data, "model", f"{where}.", str),
            "output": r.get(data, "output", f"{where}.", str),
        }
        if "carry" in data:
            kwargs["carry"] = r.typed(data["carry"], f"{where}.carry", str)
        for key in ("threshold", "reach"):
            if key in data:
                kwargs[key] = float(r.typed(data[key], f"{where}.{key}", (int, float)))
        stages.append(r.build(Stage, where, **kwargs))
    return tuple(stages)


def _variant(r: _Reader, variant: str, value: object) -> VariantConfig:
    name = f"variants.{variant}"
    data = r.mapping(value, name)
    r.unknown(data, _VARIANT_FIELDS, f"{name}.")
    pre = data.get("preprocessing")
    metadata = data.get("metadata", {})
    return r.build(
        VariantConfig,
        name,
        name=variant,
        accuracy=float(r.get(data, "accuracy", f"{name}.", (int, float))),
        accuracy_source=r.get(data, "accuracy_source", f"{name}.", str),
        input=_tensor(r, r.get(data, "input", f"{name}.", dict), f"{name}.input"),
        preprocessing=None if pre is None else _preprocessing(r, pre, f"{name}.preprocessing"),
        metadata=dict(r.mapping(metadata, f"{name}.metadata")),
        stages=_stages(r, data["stages"], f"{name}.stages") if "stages" in data else (),
        output=r.typed(data["output"], f"{name}.output", str) if "output" in data else None,
        jpeg_accuracy=_jpeg_accuracy(r, data.get("jpeg_accuracy", {}), f"{name}.jpeg_accuracy"),
    )


def _jpeg_accuracy(r: _Reader, value: object, where: str) -> dict[int, float]:
    """{quality: accuracy}; YAML may write the qualities as strings."""
    out: dict[int, float] = {}
    for quality, score in r.mapping(value, where).items():
        if not str(quality).isdigit():
            raise r.fail(f"{where}.{quality}", "must be keyed by a JPEG quality (1-100)")
        out[int(quality)] = float(r.typed(score, f"{where}.{quality}", (int, float)))
    return out


def _dynamic_batching(r: _Reader, value: object) -> DynamicBatching:
    name = "dynamic_batching"
    data = r.mapping(value, name)
    allowed = {
        "policy",
        "max_queue_delay_microseconds",
        "preferred_batch_size",
        "default_queue_policy",
        "latency_margin_microseconds",
        "shed_for_goodput",
    }
    r.unknown(data, allowed, f"{name}.")
    kwargs: dict[str, Any] = {}
    if "policy" in data:
        policy = r.typed(data["policy"], f"{name}.policy", str)
        if policy not in set(BatchPolicyName):
            choices = [p.value for p in BatchPolicyName]
            raise r.fail(f"{name}.policy", f"{policy!r} is not one of {choices}")
        kwargs["policy"] = BatchPolicyName(policy)
    for key in ("max_queue_delay_microseconds", "latency_margin_microseconds"):
        if key in data:
            kwargs[key] = r.typed(data[key], f"{name}.{key}", int)
    if "shed_for_goodput" in data:
        kwargs["shed_for_goodput"] = r.typed(
            data["shed_for_goodput"], f"{name}.shed_for_goodput", bool
        )
    if "preferred_batch_size" in data:
        sizes = r.typed(data["preferred_batch_size"], f"{name}.preferred_batch_size", list)
        kwargs["preferred_batch_size"] = tuple(
            r.typed(s, f"{name}.preferred_batch_size[{i}]", int) for i, s in enumerate(sizes)
        )
    if "default_queue_policy" in data:
        kwargs["default_queue_policy"] = _queue_policy(r, data["default_queue_policy"])
    return r.build(DynamicBatching, name, **kwargs)


def _queue_policy(r: _Reader, value: object) -> QueuePolicy:
    name = "dynamic_batching.default_queue_policy"
    data = r.mapping(value, name)
    r.unknown(data, {"max_queue_size", "default_timeout_microseconds"}, f"{name}.")
    kwargs = {k: r.typed(v, f"{name}.{k}", int) for k, v in data.items()}
    return r.build(QueuePolicy, name, **kwargs)


def _instance_groups(r: _Reader, value: object) -> tuple[InstanceGroup, ...]:
    items = r.typed(value, "instance_group", list)
    groups = []
    for i, item in enumerate(items):
        name = f"instance_group[{i}]"
        data = r.mapping(item, name)
        r.unknown(data, {"kind", "count"}, f"{name}.")
        count = r.typed(data.get("count", 1), f"{name}.count", int)
        if count != 1:
            raise r.fail(
                f"{name}.count",
                f"{count}: rheostat runs one instance per device and places devices by its "
                "plan; expected 1",
            )
        groups.append(
            r.build(
                InstanceGroup, name, kind=r.typed(data.get("kind", "KIND_CPU"), f"{name}.kind", str)
            )
        )
    if not groups:
        raise r.fail("instance_group", "needs at least one entry")
    return tuple(groups)


_FAMILY_FIELDS = {
    "name", "description", "platform", "max_batch_size", "input_kind", "output", "variants",
    "slo_ms", "labels", "dynamic_batching", "instance_group",
}  # fmt: skip


def _labels(r: _Reader, value: object, family_dir: Path) -> tuple[str, ...]:
    file_name = r.typed(value, "labels", str)
    labels_path = family_dir / file_name
    if not labels_path.is_file():
        raise r.fail("labels", f"file {labels_path} does not exist")
    return tuple(line.rstrip("\n") for line in labels_path.read_text().splitlines())


def _versions(family_dir: Path, config: VariantConfig, config_path: Path) -> tuple[int, ...]:
    variant = config.name
    variant_dir = family_dir / variant
    field_name = f"variants.{variant}"
    files = [s.model for s in config.stages] or [MODEL_FILE]
    if not variant_dir.is_dir():
        raise RepositoryError(config_path, field_name, f"folder {variant_dir} does not exist")
    versions = sorted(
        int(p.name)
        for p in variant_dir.iterdir()
        if p.is_dir() and p.name.isdigit() and int(p.name) > 0
    )
    if not versions:
        raise RepositoryError(
            variant_dir,
            field_name,
            f"expected numbered version folders (1/, 2/, ...) holding {', '.join(files)}",
        )
    for v in versions:
        for file_name in files:
            if not (variant_dir / str(v) / file_name).is_file():
                raise RepositoryError(variant_dir / str(v), file_name, "file is missing")
    return tuple(versions)


_VERSION_FIELDS = {"accuracy", "accuracy_source", "metadata", "stages", "jpeg_accuracy"}


def _served(config: VariantConfig, version_dir: Path) -> VariantConfig:
    """`config` as its served version describes itself in `version.yaml`, if it has one."""
    path = version_dir / VERSION_FILE
    if not path.is_file():
        return config
    r = _Reader(path)
    try:
        data = r.mapping(yaml.safe_load(path.read_text()), "(top level)")
    except yaml.YAMLError as exc:
        raise RepositoryError(path, "", f"is not valid YAML: {exc}") from None
    r.unknown(data, _VERSION_FIELDS, "")
    changes: dict[str, Any] = {}
    if "accuracy" in data:
        changes["accuracy"] = float(r.typed(data["accuracy"], "accuracy", (int, float)))
        # the family's figures per JPEG quality were the old version's: unknown now
        changes["jpeg_accuracy"] = _jpeg_accuracy(r, data.get("jpeg_accuracy", {}), "jpeg_accuracy")
    if "accuracy_source" in data:
        changes["accuracy_source"] = r.typed(data["accuracy_source"], "accuracy_source", str)
    if "metadata" in data:
        changes["metadata"] = {**config.metadata, **r.mapping(data["metadata"], "metadata")}
    if "stages" in data:  # a staged version's own thresholds and reach, stage by stage
        items = r.typed(data["stages"], "stages", list)
        if len(items) != len(config.stages):
            raise r.fail(
                "stages", f"has {len(items)} entries; the variant has {len(config.stages)}"
            )
        stages = []
        for i, (item, stage) in enumerate(zip(items, config.stages, strict=True)):
            tuned = r.mapping(item, f"stages[{i}]")
            r.unknown(tuned, {"threshold", "reach"}, f"stages[{i}].")
            values: dict[str, Any] = {
                k: float(r.typed(tuned[k], f"stages[{i}].{k}", (int, float)))
                for k in ("threshold", "reach") if k in tuned
            }  # fmt: skip
            try:
                stages.append(dataclasses.replace(stage, **values))
            except ValueError as exc:
                raise r.fail(f"stages[{i}]", str(exc)) from None
        changes["stages"] = tuple(stages)
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as exc:
        raise r.fail("", str(exc)) from None


def load_family(family_dir: Path) -> Family:
    """Load one family folder; raises RepositoryError naming the file and field at fault."""
    config_path = family_dir / CONFIG_FILE
    r = _Reader(config_path)
    if not config_path.is_file():
        raise RepositoryError(config_path, "", "file is missing; every family folder needs one")
    try:
        data = r.mapping(yaml.safe_load(config_path.read_text()), "(top level)")
    except yaml.YAMLError as exc:
        raise RepositoryError(config_path, "", f"is not valid YAML: {exc}") from None
    r.unknown(data, _FAMILY_FIELDS, "")
    name = r.get(data, "name", "", str)
    if name != family_dir.name:
        raise r.fail("name", f"{name!r} must equal the folder name {family_dir.name!r}")
    kind = r.get(data, "input_kind", "", str)
    if kind not in set(InputKind):
        raise r.fail("input_kind", f"{kind!r} is not one of {[k.value for k in InputKind]}")
    raw_variants = r.mapping(r.get(data, "variants", "", dict), "variants")
    variants = {v: _variant(r, v, raw) for v, raw in raw_variants.items()}
    kwargs: dict[str, Any] = {
        "name": name,
        "max_batch_size": r.get(data, "max_batch_size", "", int),
        "input_kind": InputKind(kind),
        "output": _tensor(r, r.get(data, "output", "", dict), "output"),
        "variants": variants,
    }
    if "slo_ms" in data:
        kwargs["slo_ms"] = float(r.typed(data["slo_ms"], "slo_ms", (int, float)))
    for key in ("platform", "description"):
        if key in data:
            kwargs[key] = r.typed(data[key], key, str)
    if "labels" in data:
        kwargs["labels"] = _labels(r, data["labels"], family_dir)
    if "dynamic_batching" in data:
        kwargs["dynamic_batching"] = _dynamic_batching(r, data["dynamic_batching"])
    if "instance_group" in data:
        kwargs["instance_group"] = _instance_groups(r, data["instance_group"])
    config: FamilyConfig = r.build(FamilyConfig, "", **kwargs)
    versions = {v: _versions(family_dir, c, config_path) for v, c in variants.items()}
    served = {v: _served(c, family_dir / v / str(versions[v][-1])) for v, c in variants.items()}
    config = dataclasses.replace(config, variants=served)
    return Family(config=config, path=family_dir, versions=versions)


def load_repository(path: Path | str) -> Repository:
    """Load every family folder under `path` (folders starting with '.' or '_' are skipped)."""
    root = Path(path)
    if not root.is_dir():
        raise RepositoryError(root, "", "model repository folder does not exist")
    families = {}
    for family_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if family_dir.name.startswith((".", "_")):
            continue
        family = load_family(family_dir)
        families[family.name] = family
    if not families:
        raise RepositoryError(root, "", "holds no model family (expected <family>/config.yaml)")
    return Repository(path=root, families=families)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "value") and isinstance(value.value, str):  # StrEnum
        return value.value
    return value


def family_to_dict(config: FamilyConfig, labels_file: str | None = None) -> dict[str, Any]:
    """The YAML mapping for `config` (labels are written to their own file)."""
    data: dict[str, Any] = {
        "name": config.name,
        "description": config.description,
        "platform": config.platform,
        "max_batch_size": config.max_batch_size,
        "input_kind": config.input_kind.value,
        "slo_ms": config.slo_ms,
        "output": _plain(dataclasses.asdict(config.output)),
        "dynamic_batching": _plain(dataclasses.asdict(config.dynamic_batching)),
        "instance_group": [{"kind": g.kind} for g in config.instance_group],
        "variants": {},
    }
    if labels_file:
        data["labels"] = labels_file
    for name, v in config.variants.items():
        entry: dict[str, Any] = {
            "accuracy": round(v.accuracy, 6),
            "accuracy_source": v.accuracy_source,
            "input": _plain(dataclasses.asdict(v.input)),
        }
        if v.preprocessing is not None:
            entry["preprocessing"] = _plain(dataclasses.asdict(v.preprocessing))
        if v.metadata:
            entry["metadata"] = _plain(v.metadata)
        if v.output is not None:
            entry["output"] = v.output
        if v.jpeg_accuracy:
            entry["jpeg_accuracy"] = {q: round(a, 6) for q, a in sorted(v.jpeg_accuracy.items())}
        if v.stages:
            entry["stages"] = [
                {k: x for k, x in dataclasses.asdict(s).items() if x is not None} for s in v.stages
            ]
        data["variants"][name] = entry
    return data


def write_family_config(family_dir: Path, config: FamilyConfig) -> Path:
    """Write `config.yaml` (and `labels.txt` when the family has labels) into `family_dir`."""
    family_dir.mkdir(parents=True, exist_ok=True)
    labels_file = None
    if config.labels:
        labels_file = "labels.txt"
        (family_dir / labels_file).write_text("\n".join(config.labels) + "\n")
    path = family_dir / CONFIG_FILE
    text = yaml.safe_dump(family_to_dict(config, labels_file), sort_keys=False, width=100)
    path.write_text(text)
    return path
