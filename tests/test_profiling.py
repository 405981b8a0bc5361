import numpy as np
import pytest

from rheostat.profiling import LatencyProfile


def test_interpolates_and_extrapolates_linearly() -> None:
    p = LatencyProfile({1: 0.010, 4: 0.016})
    assert p.latency_s(1) == 0.010
    assert p.latency_s(2) == pytest.approx(0.012)
    assert p.latency_s(8) == pytest.approx(0.024)


def test_single_point_scales_with_batch() -> None:
    assert LatencyProfile({2: 0.010}).latency_s(4) == pytest.approx(0.020)


def test_observe_moves_toward_measurement() -> None:
    p = LatencyProfile({1: 0.010}, smoothing=0.5)
    p.observe(1, 0.020)
    assert p.latency_s(1) == pytest.approx(0.015)


def test_rejects_bad_points() -> None:
    with pytest.raises(ValueError, match="batch_size >= 1"):
        LatencyProfile({0: 0.01})


def test_the_tail_ratio_learns_how_far_above_the_prediction_batches_run() -> None:
    rng = np.random.default_rng(0)
    exact, noisy = LatencyProfile({1: 0.010}), LatencyProfile({1: 0.010})
    ratios = np.exp(0.15 * rng.standard_normal(5000))
    for r in ratios:
        exact.observe(1, 0.010)
        noisy.observe(1, 0.010 * float(r))
    assert exact.tail_ratio == 1.0 and exact.guarded.latency_s(1) == 0.010
    # the 95th percentile of a log-normal(0.15) over its mean is about 1.26
    assert 1.15 < noisy.tail_ratio < 1.4, noisy.tail_ratio
    assert noisy.guarded.latency_s(4) == pytest.approx(noisy.latency_s(4) * noisy.tail_ratio)
    noisy.reset({1: 0.010})
    assert noisy.tail_ratio == 1.0
