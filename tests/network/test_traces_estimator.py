"""Bandwidth traces in the public formats, and the uplink estimator (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT
from rheostat.network.estimator import BandwidthEstimator
from rheostat.network.traces import BandwidthTrace, read_trace, synthetic_trace

SHARED = ROOT.parent / "shared" / "data" / "jellyfish"


def test_plain_values_replay_cyclically_from_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "lte.txt"
    path.write_text("3.5\n13.0\n\n7.25\n")
    trace = read_trace(path)
    assert trace.mbps == (3.5, 13.0, 7.25) and trace.duration_s == 3.0
    assert [trace.at(t) for t in (0, 1.5, 2.9, 3.0, 4.2)] == [3.5, 13.0, 7.25, 3.5, 13.0]
    assert trace.at(0, offset_s=2) == 7.25
    assert trace.scaled(2, floor_mbps=10).mbps == (10.0, 26.0, 14.5)


def test_timed_values_are_resampled_to_one_second_bins(tmp_path: Path) -> None:
    path = tmp_path / "cooked"
    path.write_text("0.0\t4.0\n0.5\t8.0\n1.5\t2.0\n2.0\t2.0\n")
    assert read_trace(path).mbps == pytest.approx((6.0, 5.0, 2.0))


def test_mahimahi_delivery_opportunities_become_mbps(tmp_path: Path) -> None:
    path = tmp_path / "x.up"
    path.write_text("\n".join(["5"] * 1000 + ["1500"] * 500) + "\n")  # 1000 pkts, then 500
    assert read_trace(path).mbps == pytest.approx((12.0, 6.0))


def test_bad_traces_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("1.0\nfast\n")
    with pytest.raises(ValueError, match=r"bad\.txt: not a bandwidth trace"):
        read_trace(path)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        BandwidthTrace("neg", (1.0, -2.0))


def test_the_synthetic_trace_is_seeded_and_bounded() -> None:
    a, b = synthetic_trace(seed=3), synthetic_trace(seed=3)
    assert a == b and len(a.mbps) == 120
    assert min(a.mbps) >= 1.2 and max(a.mbps) <= 36.0


@pytest.mark.skipif(not SHARED.is_dir(), reason="public traces are in ../shared (not shipped)")
def test_the_public_lte_traces_read_as_their_readme_says() -> None:
    jelly = read_trace(SHARED / "vuhpdc-jellyfish/network_shaping/lte_upload_trace.txt")
    assert len(jelly.mbps) == 199 and min(jelly.mbps) == pytest.approx(2.85, abs=0.01)
    raw = read_trace(SHARED / "public-traces/mahimahi-cellular/traces/TMobile-LTE-short.up")
    derived = read_trace(
        SHARED / "public-traces/mahimahi-cellular/derived_1s_mbps/TMobile-LTE-short.up.mbps_1s.txt"
    )
    assert raw.mbps[:100] == pytest.approx(derived.mbps[:100], abs=0.01)


def test_the_estimate_follows_uploads_and_a_slow_one_pulls_it_down_at_once() -> None:
    est = BandwidthEstimator(window=4)
    assert est.estimate_mbps(0.0) is None and est.upload_s(1000, 0.0) is None
    est.record(1000, 0.020, 0.0)  # too small to measure bandwidth: the round trip floor
    for i in range(4):
        est.record(100_000, 0.020 + 0.080, float(i))  # 100 kB in 80 ms after the floor: 10 Mbit/s
    assert est.estimate_mbps(4.0) == pytest.approx(10.0)
    est.record(100_000, 0.020 + 0.800, 4.5)  # one upload at 1 Mbit/s
    assert est.estimate_mbps(4.5) == pytest.approx(4 / (3 / 10 + 1 / 1))
    assert est.conservative_mbps(4.5) < est.estimate_mbps(4.5)
    assert est.estimate_mbps(20.0) is None  # every sample too old
    with pytest.raises(ValueError, match="not a measurement"):
        est.record(10, 0.0, 1.0)
