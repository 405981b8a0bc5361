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
