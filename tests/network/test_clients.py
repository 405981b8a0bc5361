"""The server's client registry on the virtual clock: joins, leaves and the period remap; the
instruction follows bandwidth and load; frame sizes are learnt per client."""

from __future__ import annotations

import numpy as np
import pytest

from rheostat.client import encode_frame
from rheostat.lifecycle.images import augmented_photos, sample_images
from rheostat.network.clients import (
    ClientRegistry,
    ClientReport,
    Instruction,
    OptionCost,
    frame_bytes_at,
    jpeg_size,
)

# input sizes 146 / 182 / 256 px; the big variant costs more
COSTS = [
    OptionCost("small_128", 146, 0.60, 0.004, 0.003),
    OptionCost("small_160", 182, 0.70, 0.006, 0.005),
    OptionCost("big", 256, 0.90, 0.020, 0.018),
]


def registry(capacity: float = 1.0, **kw: float) -> ClientRegistry:
    return ClientRegistry(lambda family: COSTS, lambda family: capacity, **kw)


def report(cid: str, mbps: float | None, fps: float = 10.0, **kw: int) -> ClientReport:
    return ClientReport(cid, slo_s=0.1, fps=fps, bandwidth_mbps=mbps, **kw)


def test_a_fast_client_gets_the_best_option_and_a_slow_one_smaller_frames() -> None:
    reg = registry()
    assert reg.report("f", report("fast", 50.0), 0.0) == Instruction("big", 256)
    # 256 px at 0.3 B/px^2 is 19.7 kB: 79 ms at 2 Mbit/s; 146 px (6.4 kB) takes 26 ms
    slow = reg.report("f", report("slow", 2.0), 0.1)
    assert slow.variant is not None and slow.input_size < 256
    assert reg.report("f", report("dead", 0.05), 0.2) == Instruction(None, 146)


def test_without_an_estimate_a_client_starts_small() -> None:
    reg = registry()
    first = reg.report("f", report("new", None), 0.0)
    assert first.input_size == 146


def test_a_sag_remaps_at_once_a_rise_at_the_next_period_a_join_at_once() -> None:
    reg = registry(period_s=1.0)
    assert reg.report("f", report("a", 50.0), 0.0).variant == "big"
    # at 1 Mbit/s big's frames take 158 ms: its option no longer fits, remapped at once
    assert reg.report("f", report("a", 1.0), 0.2).variant == "small_128"
    # the link recovers: better options wait for the period (no flapping on one sample)
    assert reg.report("f", report("a", 50.0), 0.4).variant == "small_128"
    assert reg.report("f", report("a", 50.0), 1.3).variant == "big"
    before = reg.remaps
    reg.report("f", report("b", 50.0), 1.4)  # a join remaps at once
    assert reg.remaps == before + 1


def test_load_moves_clients_down_and_a_leave_gives_capacity_back() -> None:
    # ten clients at 10 fps on big would need 1.8 device-seconds per second
    reg = registry(capacity=1.0, expire_s=2.0)
    for i in range(10):
        reg.report("f", report(f"c{i}", 50.0), 0.01 * i)
    variants = [reg.instruction("f", f"c{i}").variant for i in range(10)]
    assert "big" in variants and variants.count("big") < 10
    # five of them stop sending: once they expire, the rest all fit on big
    for t in (1.0, 2.0, 3.0):
        for i in range(5):
            reg.report("f", report(f"c{i}", 50.0), t)
    assert [reg.instruction("f", f"c{i}").variant for i in range(5)] == ["big"] * 5
    snapshot = reg.snapshot(3.0)["f"]
    assert isinstance(snapshot, dict) and len(snapshot["clients"]) == 5


def test_frame_bytes_are_learnt_from_what_the_client_sends() -> None:
    reg = registry()
    # a busy scene: 1.2 B per square pixel, four times the default
    for t in range(10):
        reg.report("f", report("noisy", 8.0, body_bytes=int(1.2 * 256**2), frame_px=256), t)
    reg.report("f", report("plain", 8.0, body_bytes=int(0.3 * 256**2), frame_px=256), 10.0)
    noisy, plain = reg.instruction("f", "noisy"), reg.instruction("f", "plain")
    # at 8 Mbit/s 256 px takes 79 ms for the noisy client, 20 ms for the plain one
    assert plain == Instruction("big", 256) and noisy.input_size < 256


def test_bad_reports_are_refused() -> None:
    with pytest.raises(ValueError, match="client_id"):
        ClientReport("", 0.1, 10.0, 5.0)
    with pytest.raises(ValueError, match="period_s"):
        registry(period_s=0.0)


def test_capacity_backs_off_when_the_server_misses_and_recovers_when_calm() -> None:
    reg = registry(capacity=1.0)
    for i in range(10):
        reg.report("f", report(f"c{i}", 50.0), 0.0)
    assert reg.families["f"].mapping is not None
    planned = reg.families["f"].mapping.load
    # a second in which 5 % of the mapped frames missed their server-side deadline
    for k in range(100):
        reg.outcome("f", k % 20 != 0, 0.01 * k)
    reg.outcome("f", True, 1.01)  # the period ends: judged
    reg.report("f", report("c0", 50.0), 1.02)
    snapshot = reg.snapshot(1.02)["f"]
    assert isinstance(snapshot, dict) and snapshot["capacity_scale"] == 0.8
    assert reg.families["f"].mapping.load < planned  # clients were moved to cheaper options
    # calm: no miss for the following seconds, and the scale grows back
    t = 1.02
    while t < 12.0:
        t += 0.1
        reg.outcome("f", True, t)
    assert reg.snapshot(t)["f"]["capacity_scale"] > 0.8  # type: ignore[index]


def quality_registry() -> ClientRegistry:
    # big scored at two JPEG qualities: at 30 its frames take a fraction of the bytes for a
    # little accuracy, still well above small's
    costs = [
        OptionCost("small_128", 146, 0.60, 0.004, 0.003, quality=85),
        OptionCost("small_128", 146, 0.57, 0.004, 0.003, quality=30),
        OptionCost("big", 256, 0.90, 0.020, 0.018, quality=85),
        OptionCost("big", 256, 0.86, 0.020, 0.018, quality=30),
    ]
    return ClientRegistry(lambda family: costs, lambda family: 1.0)


def test_on_a_slow_link_a_lower_quality_keeps_the_big_input_size() -> None:
    reg = quality_registry()
    assert reg.report("f", report("fast", 50.0), 0.0) == Instruction("big", 256, 85)
    # big's frame at quality 85 takes 100 ms at this rate, at quality 30 a fraction of it
    rate = frame_bytes_at(256) * 8 / 0.100 / 1e6
    assert jpeg_size(30) < 0.5
    assert reg.report("f", report("slow", rate), 0.1) == Instruction("big", 256, 30)
    clients = reg.snapshot(0.1)["f"]["clients"]  # type: ignore[index]
    assert {c["client_id"]: c["jpeg_quality"] for c in clients} == {"fast": 85, "slow": 30}
    # slower still, even quality 30 is too big at 256 px: small frames
    assert reg.report("f", report("slower", rate / 4), 0.2).variant == "small_128"


def test_frame_bytes_learnt_at_one_quality_predict_the_others() -> None:
    reg = quality_registry()
    # frames sent at quality 30 of a scene that takes 0.6 B/px^2 at quality 85
    sent = int(0.6 * jpeg_size(30) * 256**2)
    for t in range(20):
        reg.report("f", report("c", 50.0, body_bytes=sent, frame_px=256, jpeg_quality=30), t)
    learnt = reg.snapshot(20.0)["f"]["clients"][0]["bytes_per_px2"]  # type: ignore[index]
    assert learnt == pytest.approx(0.6, rel=0.01)


def test_jpeg_size_is_one_at_85_smaller_below_and_monotone() -> None:
    shares = [jpeg_size(q) for q in (10, 30, 50, 70, 85, 95)]
    assert jpeg_size(85) == 1.0 and shares == sorted(shares) and shares[0] < 0.5
    assert frame_bytes_at(200, 30) < frame_bytes_at(200) == frame_bytes_at(200, 85)
    with pytest.raises(ValueError, match="jpeg_quality 0"):
        ClientReport("c", 0.1, 10.0, 5.0, jpeg_quality=0)


def test_jpeg_size_is_what_the_sample_photos_measure() -> None:
    photos = augmented_photos(list(sample_images().values()), 30, seed=5)
    for size in (146, 256):
        at_85 = np.mean([len(encode_frame(p, size, 85)[0]) for p in photos])
        for quality in (30, 50, 70, 95):
            share = np.mean([len(encode_frame(p, size, quality)[0]) for p in photos]) / at_85
            assert share == pytest.approx(jpeg_size(quality), rel=0.1), (size, quality)
