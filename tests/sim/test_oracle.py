"""The oracle bound on instances small enough to solve by hand, and on Proteus' trace.

Hand instance: one device type "gpu"; `big` (accuracy 1.0) peaks at batch 8 in 0.4 s,
20 rps, and `small` (accuracy 0.8) at batch 16 in 0.2 s, 80 rps, under an SLO of 0.5 s.
Their largest batches miss the SLO, and `big`'s best batch misses the planner's half-SLO
budget (which would leave it 10 rps): the oracle uses the whole SLO.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rheostat.planning import VariantSpec, load_proteus_profiles
from rheostat.sim.oracle import OracleBound, oracle_bound, slo_capacity_rps

BIG = VariantSpec("f", "big", 1.0, {"gpu": {1: 0.1, 8: 0.4, 16: 0.8}})
SMALL = VariantSpec("f", "small", 0.8, {"gpu": {1: 0.02, 16: 0.2, 32: 0.6}})
SLO = {"f": 0.5}
PROTEUS = Path(__file__).resolve().parents[3] / "shared/data/proteus"


def solve_f(demand: list[int], gpus: int = 2, **kwargs: float) -> OracleBound:
    """The hand instance: family f on `gpus` GPUs, one-second windows."""
    column = np.array(demand, dtype=np.int64)[:, None]
    return oracle_bound(column, 1.0, {"gpu": gpus}, [BIG, SMALL], SLO, ["f"], **kwargs)


def test_capacity_uses_the_whole_slo_by_default() -> None:
    assert slo_capacity_rps(BIG, "gpu", 0.5) == 20.0
    assert slo_capacity_rps(BIG, "gpu", 0.5, budget_fraction=0.5) == 10.0
    assert slo_capacity_rps(SMALL, "gpu", 0.5) == 80.0
    assert slo_capacity_rps(BIG, "cpu", 0.5) == 0.0
    assert slo_capacity_rps(BIG, "gpu", 0.05) == 0.0


def test_demand_below_capacity_is_all_served_by_the_best_variant() -> None:
    bound = solve_f([30, 10, 40])
    assert bound.slo_violation_ratio == 0.0
    assert bound.effective_accuracy_pct == pytest.approx(100.0)
    assert bound.max_accuracy_drop_pct == pytest.approx(0.0, abs=1e-6)
    assert bound.throughput_qps == pytest.approx(80 / 3)
    np.testing.assert_allclose(bound.served, [[30], [10], [40]])
    np.testing.assert_allclose(bound.accuracy_pct, [100.0, 100.0, 100.0])
    assert bound.solve_time_s >= 0.0


def test_demand_above_the_best_variant_mixes_fractional_devices() -> None:
    # 20 yb + 80 ys = 100 with yb + ys <= 2, most yb: yb = ys = 1, serving 20 + 80.
    bound = solve_f([100])
    assert bound.slo_violation_ratio == pytest.approx(0.0, abs=1e-9)
    assert bound.effective_accuracy_pct == pytest.approx((20 * 1.0 + 80 * 0.8) / 100 * 100)
    assert bound.max_accuracy_drop_pct == pytest.approx(16.0)
    # Half a device of each: 10 + 40 = 50 requests at (10 + 32) / 50.
    assert solve_f([50], gpus=1).effective_accuracy_pct == pytest.approx(84.0)


def test_demand_above_every_capacity_runs_the_fastest_variant() -> None:
    bound = solve_f([200])
    assert bound.slo_violation_ratio == pytest.approx(1 - 160 / 200)
    assert bound.effective_accuracy_pct == pytest.approx(80.0)
    assert bound.throughput_qps == pytest.approx(160.0)
    np.testing.assert_allclose(bound.served, [[160]])


def test_max_drop_aggregates_windows_into_accuracy_windows() -> None:
    assert solve_f([30, 100], accuracy_window_s=1.0).max_accuracy_drop_pct == pytest.approx(16.0)
    # One 2-s window: (30 * 1.0 + 84) / 130 of the requests' accuracy.
    pooled = solve_f([30, 100], accuracy_window_s=2.0)
    assert pooled.max_accuracy_drop_pct == pytest.approx(100 - 100 * 114 / 130)
    assert pooled.effective_accuracy_pct == pytest.approx(100 * 114 / 130)
    np.testing.assert_allclose(pooled.accuracy_pct, [100.0, 84.0])


def test_two_families_share_one_device_by_requests_per_device() -> None:
    # a serves 10 rps per device, b 20: b's 10 requests take half the device, a gets 5.
    a = VariantSpec("a", "a1", 1.0, {"cpu": {1: 0.1}})
    b = VariantSpec("b", "b1", 0.5, {"cpu": {1: 0.05}})
    slo = {"a": 1.0, "b": 1.0}
    bound = oracle_bound(np.array([[10, 10]]), 1.0, {"cpu": 1}, [a, b], slo, ["a", "b"])
    np.testing.assert_allclose(bound.served, [[5, 10]])
    assert bound.slo_violation_ratio == pytest.approx(0.25)
    assert bound.effective_accuracy_pct == pytest.approx(100 * (5 * 1.0 + 10 * 0.5) / 15)


def test_equal_served_goes_to_the_more_accurate_family() -> None:
    a = VariantSpec("a", "a1", 1.0, {"cpu": {1: 0.1}})
    b = VariantSpec("b", "b1", 0.5, {"cpu": {1: 0.1}})
    slo = {"a": 1.0, "b": 1.0}
    bound = oracle_bound(np.array([[10, 10]]), 1.0, {"cpu": 1}, [a, b], slo, ["a", "b"])
    np.testing.assert_allclose(bound.served, [[10, 0]], atol=1e-6)
    assert bound.slo_violation_ratio == pytest.approx(0.5)
    assert bound.effective_accuracy_pct == pytest.approx(100.0)


def test_a_family_that_fits_nowhere_goes_unserved() -> None:
    slow = VariantSpec("slow", "s1", 1.0, {"gpu": {1: 0.9}, "tpu": {1: 0.01}})  # no tpu here
    slo = SLO | {"slow": 0.5, "none": 0.5}
    demand = np.array([[30, 20, 10]])
    bound = oracle_bound(demand, 1.0, {"gpu": 2}, [BIG, SMALL, slow], slo, ["f", "slow", "none"])
    np.testing.assert_allclose(bound.served, [[30, 0, 0]])
    assert bound.slo_violation_ratio == pytest.approx(0.5)
    assert bound.effective_accuracy_pct == pytest.approx(100.0)


def test_nothing_served_gives_nan_accuracy() -> None:
    bound = solve_f([0, 0])
    assert bound.slo_violation_ratio == 0.0
    assert bound.throughput_qps == 0.0
    assert math.isnan(bound.effective_accuracy_pct)
    assert math.isnan(bound.max_accuracy_drop_pct)
    assert np.isnan(bound.accuracy_pct).all()
    assert solve_f([10], gpus=0).slo_violation_ratio == 1.0


def test_windows_are_independent() -> None:
    """No carry-over: the whole trace's answer is the sum of each window's alone."""
    a1 = VariantSpec("a", "a1", 1.0, {"cpu": {1: 0.2, 4: 0.5}, "gpu": {1: 0.02, 8: 0.1}})
    a2 = VariantSpec("a", "a2", 0.7, {"cpu": {1: 0.05, 8: 0.3}, "gpu": {4: 0.01}})
    b1 = VariantSpec("b", "b1", 0.9, {"gpu": {2: 0.04, 16: 0.2}})
    args = ({"cpu": 3, "gpu": 1}, [a1, a2, b1], {"a": 0.5, "b": 0.25}, ["a", "b"])
    demand = np.random.default_rng(7).integers(0, 400, size=(6, 2))
    whole = oracle_bound(demand, 0.5, *args)
    alone = [oracle_bound(demand[w : w + 1], 0.5, *args) for w in range(len(demand))]
    np.testing.assert_allclose(whole.served, np.vstack([b.served for b in alone]), atol=1e-4)
    np.testing.assert_allclose(whole.accuracy_pct, [b.effective_accuracy_pct for b in alone])
    assert 0.0 < whole.slo_violation_ratio < 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"demand": np.zeros((3, 2))}, r"demand shape \(3, 2\)"),
        ({"demand": np.zeros(3)}, r"demand shape \(3,\)"),
        ({"demand": np.zeros((0, 1))}, r"demand shape \(0, 1\)"),
        ({"demand": np.array([[1], [-2]])}, r"demand\[1, 0\] = -2"),
        ({"demand": np.array([[np.nan]])}, r"demand\[0, 0\] = nan"),
        ({"demand": np.array([["x"]])}, "demand dtype"),
        ({"window_s": 0.0}, "window_s 0.0"),
        ({"window_s": -1.0}, "window_s -1.0"),
        ({"families": ["g"]}, r"unknown families \['f'\]"),
        ({"families": ["f", "f"]}, "duplicates"),
        ({"slo_s": {}}, r"families \['f'\] need an slo_s"),
        ({"slo_s": {"f": 0.0}}, "slo_s > 0"),
        ({"device_counts": {"gpu": -1}}, r"device_counts \{'gpu': -1\}"),
        ({"accuracy_window_s": 2.5}, "accuracy_window_s 2.5"),
        ({"accuracy_window_s": 0.0}, "accuracy_window_s 0.0"),
    ],
)
def test_bad_input_is_named(change: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "demand": np.array([[1]]),
        "window_s": 1.0,
        "device_counts": {"gpu": 1},
        "variants": [BIG],
        "slo_s": SLO,
        "families": ["f"],
    }
    with pytest.raises(ValueError, match=message):
        oracle_bound(**(args | change))  # type: ignore[arg-type]


def proteus_demand(families: list[str]) -> np.ndarray:
    """Requests per second of each family in the zipf_exponential trace (arrival_ms)."""
    traces = PROTEUS / "traces/twitter/asplos/zipf_exponential/300"
    arrivals = [np.loadtxt(traces / f"{f}.txt", delimiter=",", ndmin=2)[:, 0] for f in families]
    seconds = [(a // 1000).astype(np.int64) for a in arrivals]
    num_windows = max(int(s.max()) for s in seconds) + 1
    return np.stack([np.bincount(s, minlength=num_windows) for s in seconds], axis=1)


@pytest.mark.skipif(not PROTEUS.is_dir(), reason=f"Proteus data not at {PROTEUS}")
def test_proteus_trace_bound() -> None:
    profiles = PROTEUS / "profiling/aggregate_profiled.csv"
    variants_dir = PROTEUS / "traces/model_variants"
    variants = load_proteus_profiles(profiles, variants_dir)
    families = sorted({v.family for v in variants})
    demand = proteus_demand(families)
    cluster = {"cpu": 20, "1080ti": 10, "v100": 10}  # Proteus' 10 VPUs counted as CPUs
    slo = dict.fromkeys(families, 0.3)
    bound = oracle_bound(demand, 1.0, cluster, variants, slo, families)
    assert 0.0 <= bound.slo_violation_ratio <= 1.0
    assert bound.served.shape == demand.shape
    assert np.all(bound.served <= demand + 1e-6)
    assert bound.throughput_qps == pytest.approx(bound.served.sum() / len(demand))
    assert 0.0 < bound.effective_accuracy_pct <= 100.0
    print(  # shown with -s: the figures of the bound
        f"\nproteus oracle: windows={demand.shape[0]} requests={int(demand.sum())} "
        f"violation={bound.slo_violation_ratio:.6f} accuracy={bound.effective_accuracy_pct:.3f}% "
        f"max_drop={bound.max_accuracy_drop_pct:.3f}% throughput={bound.throughput_qps:.2f} qps "
        f"solve={bound.solve_time_s:.3f} s"
    )
