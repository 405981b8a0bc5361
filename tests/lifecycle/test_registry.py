"""Registering versions and variants, rolling back, and per-version descriptions
(`version.yaml`), on the toy repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import build_toy_repository
from rheostat.errors import RepositoryError
from rheostat.lifecycle.registry import add_variant, register_version, rollback
from rheostat.repository import load_family


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    return build_toy_repository(tmp_path) / "toy"


def test_a_registered_version_is_served_with_its_own_accuracy(toy: Path) -> None:
    model = toy / "slow" / "1" / "model.onnx"
    info = register_version(toy, "slow", model, accuracy=0.93, accuracy_source="measured: x",
                            metadata={"note": "retrained"})  # fmt: skip
    family = load_family(toy)
    assert info.version == 2 and family.served_version("slow") == 2
    assert family.config.variants["slow"].accuracy == 0.93
    assert family.config.variants["slow"].metadata["note"] == "retrained"
    assert family.config.variants["fast"].accuracy == 0.80  # untouched
    assert not list((toy / "slow").glob(".staging-*"))


def test_rollback_serves_the_version_before_and_numbers_never_repeat(toy: Path) -> None:
    model = toy / "slow" / "1" / "model.onnx"
    register_version(toy, "slow", model, accuracy=0.5, accuracy_source="measured: bad")
    assert rollback(toy, "slow") == (2, 1)
    family = load_family(toy)
    assert family.versions["slow"] == (1,) and family.config.variants["slow"].accuracy == 0.90
    assert (toy / "slow" / ".retired-2" / "model.onnx").is_file()  # kept for inspection
    again = register_version(toy, "slow", model, accuracy=0.91, accuracy_source="measured: y")
    assert again.version == 3
    with pytest.raises(ValueError, match="only version 1"):
        rollback(toy, "fast")


def test_registering_wrongly_names_what_is_wrong(toy: Path) -> None:
    model = toy / "slow" / "1" / "model.onnx"
    with pytest.raises(RepositoryError, match=r"variants\.nope.*no such variant"):
        register_version(toy, "nope", model, accuracy=0.5, accuracy_source="x")
    with pytest.raises(ValueError, match=r"accuracy 1\.5"):
        register_version(toy, "slow", model, accuracy=1.5, accuracy_source="x")
    with pytest.raises(ValueError, match=r"needs files \['model.onnx'\]"):
        register_version(toy, "slow", {"other.onnx": model}, accuracy=0.5, accuracy_source="x")
    assert load_family(toy).versions["slow"] == (1,)


def test_a_broken_version_file_names_its_field(toy: Path) -> None:
    (toy / "slow" / "1" / "version.yaml").write_text("accuracy: 2.0\n")
    with pytest.raises(RepositoryError, match=r"slow/1/version.yaml.*accuracy: 2.0 must be in"):
        load_family(toy)
    (toy / "slow" / "1" / "version.yaml").write_text("colour: red\n")
    with pytest.raises(RepositoryError, match="colour: unknown field"):
        load_family(toy)


def test_an_added_variant_joins_the_family_and_a_bad_one_leaves_no_trace(toy: Path) -> None:
    entry = {"accuracy": 0.85, "accuracy_source": "measured: int8",
             "input": {"name": "input", "data_type": "TYPE_FP32", "dims": [4]}}  # fmt: skip
    add_variant(toy, entry, "slow_int8", toy / "slow" / "1" / "model.onnx")
    family = load_family(toy)
    assert family.config.variants["slow_int8"].accuracy == 0.85
    assert family.config.description == yaml.safe_load((toy / "config.yaml").read_text())[
        "description"]  # fmt: skip
    before = (toy / "config.yaml").read_text()
    bad = {**entry, "input": {"name": "input", "data_type": "TYPE_NOPE", "dims": [4]}}
    with pytest.raises(RepositoryError, match="TYPE_NOPE"):
        add_variant(toy, bad, "broken", toy / "slow" / "1" / "model.onnx")
    assert (toy / "config.yaml").read_text() == before and not (toy / "broken").exists()
    with pytest.raises(ValueError, match="exists already"):
        add_variant(toy, entry, "slow_int8", toy / "slow" / "1" / "model.onnx")


def test_a_version_that_would_break_the_family_is_withdrawn(toy: Path, tmp_path: Path) -> None:
    model = toy / "slow" / "1" / "model.onnx"
    with pytest.raises(RepositoryError, match="stages: has 1 entries; the variant has 0"):
        register_version(toy, "slow", model, accuracy=0.9, accuracy_source="x",
                         stages=[{"threshold": 0.5}])  # fmt: skip
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"junk\.onnx: ONNX Runtime cannot open it"):
        register_version(toy, "slow", junk, accuracy=0.9, accuracy_source="x")
    assert load_family(toy).versions["slow"] == (1,)
    assert sorted(p.name for p in (toy / "slow").iterdir()) == ["1"]  # nothing left behind
