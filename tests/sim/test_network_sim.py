"""Edge clients on traced links in virtual time: the simulator drives the server's own
registry, mapping, admission and batching, in the four camera modes."""

from __future__ import annotations

import pytest

from rheostat.network.camera import CameraMode
from rheostat.network.traces import BandwidthTrace
from rheostat.sim.network import SimClient, SimVariant, simulate_clients

# input sizes 146 / 219 / 297 px; batch latency grows with the batch
VARIANTS = [
    SimVariant("small", 0.60, 146, {1: 0.004, 2: 0.007, 4: 0.013, 8: 0.025}),
    SimVariant("mid", 0.80, 219, {1: 0.009, 2: 0.016, 4: 0.030, 8: 0.058}),
    SimVariant("big", 1.00, 297, {1: 0.020, 2: 0.036, 4: 0.068, 8: 0.130}),
]
# 20 Mbit/s, halving every second down to 10 s at 1.5 (a 297-px frame of 26 kB takes 140 ms
# there; 146 px, 34 ms), then back
SAGGING = BandwidthTrace(
    "sag", (20.0,) * 8 + (10.0, 5.0, 2.5) + (1.5,) * 10 + (5.0,) + (20.0,) * 8, 1.0
)


def run(mode: CameraMode, clients: int = 8, fps: float = 10.0, devices: int = 2,
        static: str | None = None, trace: BandwidthTrace = SAGGING) -> dict:  # fmt: skip
    cams = [SimClient(f"c{i}", trace, offset_s=0.0, fps=fps) for i in range(clients)]
    return simulate_clients(cams, VARIANTS, devices, mode, seconds=30.0, static_variant=static)


def test_rheostat_meets_the_slo_through_a_sagging_link_where_static_choices_cannot() -> None:
    adaptive = run(CameraMode.ADAPTIVE)
    big, small = run(CameraMode.STATIC, static="big"), run(CameraMode.STATIC, static="small")
    print(adaptive, big, small)
    assert adaptive["on_time"] >= 0.99 and adaptive["remaps"] > 10
    assert big["on_time"] < 0.8  # its frames cannot cross the sag in time
    assert adaptive["accuracy"] > small["accuracy"] + 0.1  # and it keeps accuracy elsewhere
    assert {"small", "big"} <= set(adaptive["variants"])  # it moved between them


def test_server_only_adaptation_cannot_shrink_uploads() -> None:
    server = run(CameraMode.SERVER)
    assert server["on_time"] < 0.8  # full-size frames over the sag are late or dropped


def test_client_only_adaptation_ignores_the_servers_load() -> None:
    # a fast link for all, but 24 cameras at 15 fps: big for everyone needs 24*15*18 ms =
    # 6.5 device-seconds per second of 2 devices; each client alone would pick big
    fast = BandwidthTrace("fast", (30.0,) * 30, 1.0)
    client = run(CameraMode.CLIENT, clients=24, fps=15.0, trace=fast)
    adaptive = run(CameraMode.ADAPTIVE, clients=24, fps=15.0, trace=fast)
    print(client, adaptive)
    assert client["on_time"] < 0.9
    assert adaptive["on_time"] >= 0.99
    assert adaptive["utilization"] <= 0.9


def test_bad_runs_are_refused() -> None:
    with pytest.raises(ValueError, match="static"):
        run(CameraMode.STATIC)
    with pytest.raises(ValueError, match="not one of"):
        run(CameraMode.STATIC, static="huge")


def test_a_lower_jpeg_quality_keeps_accuracy_through_the_sag() -> None:
    # the same variants scored at quality 30 too: a little less accurate, far fewer bytes.
    # Through the sag, sizes alone must fall to small's 146 px; with quality as a second
    # knob, mid or big frames at quality 30 still fit
    scored = [
        SimVariant(v.name, v.accuracy, v.input_size, v.latency_s,
                   {85: v.accuracy, 30: v.accuracy - 0.03})
        for v in VARIANTS
    ]  # fmt: skip
    cams = [SimClient(f"c{i}", SAGGING, fps=10.0) for i in range(8)]
    sizes_only = simulate_clients(cams, VARIANTS, 2, CameraMode.ADAPTIVE, seconds=30.0)
    both = simulate_clients(cams, scored, 2, CameraMode.ADAPTIVE, seconds=30.0)
    print(sizes_only, both)
    assert both["on_time"] >= 0.99
    assert both["accuracy"] > sizes_only["accuracy"] + 0.01
