"""Staged variants: threshold choice (pure), and cascades / the adaptive exit run by the
server's own backend on the default repository's digits families."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rheostat.backends.onnx import OnnxBackend, load_spec, softmax_confidence
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.work import Payload, PayloadKind
from rheostat.lifecycle.conditional import choose_threshold, measure_variant
from rheostat.lifecycle.digits import load_digits_split
from rheostat.repository import load_family


def test_the_lowest_threshold_meeting_the_target_is_chosen() -> None:
    # stage 1 is right on rows 0-5, wrong on 6-9; stage 2 is right everywhere
    confidence = [np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.5, 0.4, 0.3]),
                  np.ones(10)]  # fmt: skip
    correct = [np.arange(10) < 6, np.ones(10, dtype=bool)]
    choice = choose_threshold(confidence, correct, target=1.0)
    assert choice.threshold == pytest.approx(0.94)  # 0.93 would let a wrong row exit
    assert choice.accuracy == 1.0
    assert choice.reach == (1.0, pytest.approx(0.4))
    looser = choose_threshold(confidence, correct, target=0.9)
    assert looser.threshold == pytest.approx(0.93) and looser.accuracy == pytest.approx(0.9)


def test_an_unreachable_target_keeps_every_row_for_the_last_stage() -> None:
    confidence = [np.array([0.9, 0.8]), np.ones(2)]
    correct = [np.array([False, False]), np.array([True, False])]
    choice = choose_threshold(confidence, correct, target=0.99)
    assert choice.threshold == 1.0 and choice.reach == (1.0, 1.0)


def test_softmax_confidence_is_the_top_probability() -> None:
    logits = np.array([[0.0, 0.0], [10.0, 0.0]])
    assert softmax_confidence(logits) == pytest.approx([0.5, 1 / (1 + np.exp(-10))])


def _backend() -> OnnxBackend:
    return OnnxBackend(Device("test", DeviceKind.CPU, tuple(sorted(os.sched_getaffinity(0)))[:1]))


@pytest.mark.parametrize(
    ("family", "variant"), [("digits", "cascade"), ("digits_exits", "adaptive")]
)
def test_staged_variants_answer_most_rows_early_and_keep_their_measured_accuracy(
    default_repository: Path, family: str, variant: str
) -> None:
    fam = load_family(default_repository / family)
    config = fam.config.variants[variant]
    _, _, x_test, y_test = load_digits_split()
    accuracy, exits = measure_variant(fam.path, variant, x_test, y_test)
    assert accuracy == pytest.approx(config.accuracy, abs=1e-6)  # what config.yaml claims
    assert np.mean(exits == 1) > 0.6  # most rows leave at the first stage
    assert set(exits.tolist()) <= set(range(1, len(config.stages) + 1))
    last = max(v.accuracy for v in fam.config.variants.values() if not v.stages)
    assert accuracy >= last - 0.01


def test_a_staged_profile_charges_reach_and_its_worst_case_every_stage(
    default_repository: Path,
) -> None:
    fam = load_family(default_repository / "digits_exits")
    backend = _backend()
    spec = load_spec(fam, "adaptive")
    backend.load(spec)
    expected = backend.profile(spec.key, [64], repeats=15)[64]
    worst = backend.profile(spec.key, [64], repeats=15, worst=True)[64]
    assert worst > 2 * expected  # every row through the costly last stage
    last = load_spec(fam, "exit3")
    backend.load(last)
    assert worst > 0.8 * backend.profile(last.key, [64], repeats=15)[64]


def test_a_staged_batch_keeps_bad_rows_as_errors(default_repository: Path) -> None:
    fam = load_family(default_repository / "digits")
    backend = _backend()
    spec = load_spec(fam, "cascade")
    backend.load(spec)
    _, _, x_test, _ = load_digits_split()
    rows = [Payload(PayloadKind.TENSOR, x_test[0]), Payload(PayloadKind.ENCODED, b"jpeg"),
            Payload(PayloadKind.TENSOR, x_test[1])]  # fmt: skip
    result = backend.run(spec.key, rows)
    assert isinstance(result.outputs[1], str)
    assert result.stages[1] == 0 and result.stages[0] in (1, 2) and result.stages[2] in (1, 2)
