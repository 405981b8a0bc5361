import pytest

from rheostat.control.demand import DemandEstimator


def feed(est: DemandEstimator, family: str, rps: int, start_s: float, seconds: int) -> None:
    for second in range(seconds):
        for i in range(rps):
            est.record(family, start_s + second + i / rps)


def test_steady_rate_is_estimated_exactly() -> None:
    est = DemandEstimator()
    feed(est, "f", 10, 0.0, 5)
    assert est.rates(5.0) == {"f": pytest.approx(10.0)}


def test_gradual_change_is_smoothed() -> None:
    est = DemandEstimator(alpha=0.5, burst_factor=10)
    feed(est, "f", 10, 0.0, 3)
    feed(est, "f", 12, 3.0, 1)
    assert est.rates(4.0)["f"] == pytest.approx(11.0)


def test_burst_is_followed_at_once() -> None:
    est = DemandEstimator(alpha=0.1, burst_factor=1.5)
    feed(est, "f", 10, 0.0, 3)
    feed(est, "f", 40, 3.0, 1)
    assert est.rates(4.0)["f"] == pytest.approx(40.0)


def test_silence_decays_the_estimate() -> None:
    est = DemandEstimator(alpha=0.5)
    feed(est, "f", 8, 0.0, 2)
    assert est.rates(2.0)["f"] == pytest.approx(8.0)
    assert est.rates(4.0)["f"] == pytest.approx(2.0)  # two empty bins: 8 * 0.5 * 0.5


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="burst_factor=1"):
        DemandEstimator(burst_factor=1)


def test_rises_are_followed_faster_than_falls() -> None:
    est = DemandEstimator(alpha=0.25, alpha_up=0.75, burst_factor=10)
    feed(est, "f", 10, 0.0, 2)
    feed(est, "f", 14, 2.0, 1)
    assert est.rates(3.0)["f"] == pytest.approx(13.0)
    feed(est, "f", 10, 3.0, 1)
    assert est.rates(4.0)["f"] == pytest.approx(12.25)
