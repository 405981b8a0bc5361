"""The digits family: trained, exported and measured exactly as its config says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rheostat.lifecycle import digits
from rheostat.lifecycle.default_repository import build_default_repository
from rheostat.lifecycle.digits import load_digits_split, train_digits_family
from rheostat.lifecycle.quantize import ort_session
from rheostat.repository import InputKind, load_repository

VARIANTS = ("mlp_tiny", "cnn_small")
# Observed 0.974 / 0.987 (seed 0); a margin keeps the test about sense, not the exact figure.
MIN_ACCURACY = {"mlp_tiny": 0.93, "cnn_small": 0.95}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits-repo")
    train_digits_family(root / "digits", variants=VARIANTS)
    return root


def test_split_is_stratified_held_out_and_raw() -> None:
    x_train, y_train, x_test, y_test = load_digits_split()
    assert x_train.shape == (1257, 64) and x_test.shape == (540, 64)
    assert x_test.dtype == np.float32 and y_test.dtype == np.int64
    assert x_test.min() == 0 and x_test.max() == 16
    per_class = np.bincount(np.concatenate([y_train, y_test]))
    assert np.all(np.abs(np.bincount(y_test) - 0.3 * per_class) <= 1)  # stratified
    again = load_digits_split()
    assert np.array_equal(again[2], x_test) and np.array_equal(again[3], y_test)


def test_family_config_loads_with_the_requested_variants(repository: Path) -> None:
    family = load_repository(repository).families["digits"]
    config = family.config
    assert tuple(config.variants) == VARIANTS
    assert config.input_kind is InputKind.TENSOR
    assert config.max_batch_size == 64 and config.slo_ms == 50
    assert config.labels == tuple("0123456789")
    assert config.output.dims == (10,)
    for name, variant in config.variants.items():
        assert variant.input.name == "input" and variant.input.dims == (64,)
        assert family.model_path(name) == repository / "digits" / name / "1" / "model.onnx"


def test_accuracy_is_the_one_measured_on_the_held_out_split(repository: Path) -> None:
    _, _, x_test, y_test = load_digits_split()
    family = load_repository(repository).families["digits"]
    for name, variant in family.config.variants.items():
        session = ort_session(family.model_path(name))
        logits = session.run(None, {"input": x_test})[0]
        correct = int(np.sum(np.argmax(logits, axis=1) == y_test))
        assert variant.metadata["test_correct"] == correct
        assert variant.metadata["test_size"] == 540
        assert variant.accuracy == pytest.approx(correct / 540, abs=1e-6)
        assert variant.accuracy >= MIN_ACCURACY[name], name
        assert variant.accuracy_source.startswith("measured: top-1 on 540 held-out")


def test_models_take_raw_pixels_and_any_batch_size(repository: Path) -> None:
    _, _, x_test, _ = load_digits_split()
    family = load_repository(repository).families["digits"]
    for name in family.config.variants:
        session = ort_session(family.model_path(name))
        assert session.get_inputs()[0].name == "input"
        assert session.get_outputs()[0].name == "logits"
        whole = session.run(None, {"input": x_test[:7]})[0]
        assert whole.shape == (7, 10) and whole.dtype == np.float32
        one = session.run(None, {"input": x_test[:1]})[0]
        np.testing.assert_allclose(one[0], whole[0], atol=1e-5)


def test_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown digits variants"):
        train_digits_family(tmp_path / "digits", variants=["mlp_huge"])


def test_default_repository_build_replaces_the_output_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = digits.train_digits_family

    def one_variant(family_dir: Path, **kwargs: Any) -> dict[str, Any]:
        return real(family_dir, variants=["mlp_tiny"], **kwargs)

    monkeypatch.setattr(digits, "train_digits_family", one_variant)
    output = tmp_path / "repo"
    output.mkdir()
    (output / "stale.txt").write_text("from an older build")
    messages: list[str] = []
    summary = build_default_repository(output, families=["digits"], progress=messages.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no staging folder left
    assert not (output / "stale.txt").exists()
    assert (output / ".complete").is_file()
    assert json.loads((output / "build_report.json").read_text()) == summary
    assert summary["families"]["digits"]["variants"]["mlp_tiny"]["test_size"] == 540
    assert any("mlp_tiny" in m for m in messages)
    assert list(load_repository(output).families) == ["digits"]

    def broken(family_dir: Path, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("training failed")

    monkeypatch.setattr(digits, "train_digits_family", broken)
    with pytest.raises(RuntimeError, match="training failed"):
        build_default_repository(output, families=["digits"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert (output / ".complete").is_file()  # the previous build is untouched
    with pytest.raises(ValueError, match="expected one or more of"):
        build_default_repository(output, families=["resnet"])
