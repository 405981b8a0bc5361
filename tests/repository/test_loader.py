"""Loading repositories: good ones load; bad ones name the file, the field and the fix."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from rheostat.errors import RepositoryError
from rheostat.repository import (
    BatchPolicyName,
    InputKind,
    family_to_dict,
    load_family,
    load_repository,
    write_family_config,
)


def config(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "toy",
        "max_batch_size": 8,
        "input_kind": "tensor",
        "slo_ms": 50,
        "output": {"name": "logits", "data_type": "TYPE_FP32", "dims": [3]},
        "dynamic_batching": {
            "policy": "max_delay",
            "max_queue_delay_microseconds": 500,
            "preferred_batch_size": [4],
            "default_queue_policy": {"max_queue_size": 32},
        },
        "instance_group": [{"kind": "KIND_CPU"}],
        "variants": {
            "small": {
                "accuracy": 0.9,
                "accuracy_source": "measured on 100 held-out samples",
                "input": {"name": "input", "data_type": "TYPE_FP32", "dims": [4]},
            }
        },
    }
    data.update(overrides)
    return data


def write(root: Path, data: dict[str, Any], versions: tuple[int, ...] = (1,)) -> Path:
    family_dir = root / data.get("name", "toy")
    family_dir.mkdir(parents=True)
    (family_dir / "config.yaml").write_text(yaml.safe_dump(data))
    for variant in data.get("variants", {}):
        for version in versions:
            (family_dir / variant / str(version)).mkdir(parents=True)
            (family_dir / variant / str(version) / "model.onnx").write_bytes(b"onnx")
    return family_dir


def test_loads_a_valid_family_and_serves_the_highest_version(tmp_path: Path) -> None:
    write(tmp_path, config(), versions=(1, 3, 2))
    repo = load_repository(tmp_path)
    family = repo.families["toy"]
    assert family.config.input_kind is InputKind.TENSOR
    assert family.config.dynamic_batching.policy is BatchPolicyName.MAX_DELAY
    assert family.config.dynamic_batching.preferred_batch_size == (4,)
    assert family.versions["small"] == (1, 2, 3)
    assert family.model_path("small") == tmp_path / "toy" / "small" / "3" / "model.onnx"
    assert family.config.default_timeout_s == 0.05


def test_round_trips_through_write_family_config(tmp_path: Path) -> None:
    original = load_family(write(tmp_path / "a", config()))
    out = tmp_path / "b" / "toy"
    write_family_config(out, original.config)
    assert yaml.safe_load((out / "config.yaml").read_text()) == family_to_dict(original.config)
    (out / "small" / "1").mkdir(parents=True)
    (out / "small" / "1" / "model.onnx").write_bytes(b"x")
    assert load_family(out).config == original.config


BAD = [
    ({"max_batch_size": "8"}, "max_batch_size", "expected an integer, got '8'"),
    ({"max_batch_size": 0}, "", "max_batch_size: 0 must be >= 1"),
    ({"input_kind": "audio"}, "input_kind", "'audio' is not one of ['image', 'tensor']"),
    ({"name": "other"}, "name", "must equal the folder name 'toy'"),
    ({"sl0_ms": 5}, "sl0_ms", "unknown field"),
    ({"platform": "tensorrt_plan"}, "", "'tensorrt_plan' is not supported"),
    (
        {"dynamic_batching": {"policy": "fastest"}},
        "dynamic_batching.policy",
        "'fastest' is not one of ['fixed', 'max_delay', 'deadline_aware', 'aimd']",
    ),
    (
        {"dynamic_batching": {"preferred_batch_size": [16]}},
        "",
        "[16] exceed max_batch_size 8",
    ),
    ({"instance_group": [{"kind": "KIND_TPU"}]}, "instance_group[0]", "'KIND_TPU' is not"),
    ({"instance_group": [{"count": 2}]}, "instance_group[0].count", "expected 1"),
    (
        {"output": {"name": "y", "data_type": "TYPE_FLOAT", "dims": [3]}},
        "output",
        "'TYPE_FLOAT' is not one of",
    ),
]


@pytest.mark.parametrize(("overrides", "field", "problem"), BAD)
def test_bad_config_names_file_field_and_expectation(
    tmp_path: Path, overrides: dict[str, Any], field: str, problem: str
) -> None:
    data = config(**overrides)
    family_dir = write(tmp_path, {**data, "name": data["name"]} if "name" in overrides else data)
    if "name" in overrides:
        family_dir.rename(tmp_path / "toy")
    with pytest.raises(RepositoryError) as info:
        load_repository(tmp_path)
    assert info.value.path.endswith("toy/config.yaml")
    assert info.value.field == field
    assert problem in str(info.value)


def test_bad_variant_accuracy_is_named(tmp_path: Path) -> None:
    data = config()
    data["variants"]["small"]["accuracy"] = 1.5
    write(tmp_path, data)
    with pytest.raises(
        RepositoryError, match=r"variants\.small: accuracy: 1\.5 must be in \[0, 1\]"
    ):
        load_repository(tmp_path)


def test_image_family_needs_preprocessing(tmp_path: Path) -> None:
    write(tmp_path, config(input_kind="image"))
    with pytest.raises(RepositoryError, match=r"\['small'\] need `preprocessing`"):
        load_repository(tmp_path)


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    family_dir = write(tmp_path, config())
    (family_dir / "small" / "1" / "model.onnx").unlink()
    with pytest.raises(RepositoryError, match=r"small/1: model.onnx: file is missing"):
        load_repository(tmp_path)


def test_invalid_yaml_and_empty_repository(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "config.yaml").write_text("name: [unclosed")
    with pytest.raises(RepositoryError, match="is not valid YAML"):
        load_repository(tmp_path)
    with pytest.raises(RepositoryError, match="holds no model family"):
        load_repository(tmp_path / "toy")
    with pytest.raises(RepositoryError, match="does not exist"):
        load_repository(tmp_path / "nowhere")


def image_config(jpeg_accuracy: Any) -> dict[str, Any]:
    data = config(input_kind="image")
    variant = data["variants"]["small"]
    variant["input"]["dims"] = [3, 8, 8]
    variant["preprocessing"] = {"crop_px": 8, "resize_shorter_px": 10, "mean": [0, 0, 0],
                                "std": [1, 1, 1], "layout": "NCHW"}  # fmt: skip
    variant["jpeg_accuracy"] = jpeg_accuracy
    return data


def test_jpeg_accuracy_loads_and_round_trips(tmp_path: Path) -> None:
    family = load_family(write(tmp_path / "a", image_config({85: 0.9, "30": 0.85})))
    assert family.config.variants["small"].jpeg_accuracy == {85: 0.9, 30: 0.85}
    out = tmp_path / "b" / "toy"
    write_family_config(out, family.config)
    (out / "small" / "1").mkdir(parents=True)
    (out / "small" / "1" / "model.onnx").write_bytes(b"x")
    assert load_family(out).config == family.config


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"high": 0.9}, "jpeg_accuracy.high: must be keyed by a JPEG quality (1-100)"),
        ({0: 0.9}, "jpeg_accuracy.0: 0.9: qualities must be integers in [1, 100]"),
        ({50: 1.2}, "jpeg_accuracy.50: 1.2: qualities must be integers in [1, 100]"),
        ({50: "good"}, "jpeg_accuracy.50: expected"),
    ],
)
def test_bad_jpeg_accuracy_is_named(tmp_path: Path, value: Any, problem: str) -> None:
    write(tmp_path, image_config(value))
    with pytest.raises(RepositoryError) as info:
        load_repository(tmp_path)
    assert problem in str(info.value), str(info.value)


def test_jpeg_accuracy_needs_an_image_variant(tmp_path: Path) -> None:
    data = config()
    data["variants"]["small"]["jpeg_accuracy"] = {50: 0.8}
    write(tmp_path, data)
    with pytest.raises(RepositoryError, match="only a variant that takes images"):
        load_repository(tmp_path)
