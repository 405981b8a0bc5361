"""The collective client mapping (pure): bandwidth decides the input size, capacity the
variant, and a client no option can serve in time is told so."""

from __future__ import annotations

import pytest

from rheostat.network.mapping import ClientState, Option, map_clients

# frame bytes grow with the square of the size; device cost with the variant and the size
OPTIONS = [
    Option("big", 256, 0.80, 40_000, 0.030, 0.020),
    Option("big", 160, 0.74, 16_000, 0.015, 0.008),
    Option("small", 256, 0.70, 40_000, 0.010, 0.005),
    Option("small", 160, 0.65, 16_000, 0.006, 0.002),
    Option("small", 96, 0.55, 6_000, 0.004, 0.001),
]


def client(name: str, mbps: float, fps: float = 10.0, slo_ms: float = 100) -> ClientState:
    return ClientState(name, mbps, slo_ms / 1e3, fps)


def test_a_fast_link_and_spare_capacity_get_the_most_accurate_option() -> None:
    result = map_clients([client("a", 20.0)], OPTIONS, capacity=1.0)
    assert result.choice["a"] == OPTIONS[0] and result.feasible()
    assert result.weighted_accuracy == pytest.approx(0.80)


def test_a_slow_link_sends_smaller_frames() -> None:
    # 40 kB at 4 Mbit/s is 80 ms: with 30 ms inference it cannot fit 85 ms; 16 kB can
    result = map_clients([client("a", 4.0)], OPTIONS, capacity=1.0)
    chosen = result.choice["a"]
    assert chosen is not None and chosen.size_px == 160 and chosen.variant == "big"


def test_no_feasible_option_is_none_not_a_late_answer() -> None:
    result = map_clients([client("a", 0.2)], OPTIONS, capacity=1.0)  # 6 kB takes 240 ms
    assert result.choice["a"] is None and result.weighted_accuracy == 0.0


def test_under_load_the_cheapest_accuracy_losses_are_taken_first() -> None:
    clients = [client(f"c{i}", 20.0, fps=10) for i in range(8)]
    alone = map_clients(clients, OPTIONS, capacity=10.0)
    assert {o.variant for o in alone.choice.values() if o} == {"big"}  # 1.6 of 10: fits
    tight = map_clients(clients, OPTIONS, capacity=0.8)  # big@256 for all would need 1.6
    assert tight.feasible() and tight.load <= 0.8
    assert tight.weighted_accuracy < alone.weighted_accuracy
    # the first step down is big@160 (0.06 accuracy for 0.012 s saved per frame), not small
    assert all(o is not None and o.variant == "big" for o in tight.choice.values())
    tighter = map_clients(clients, OPTIONS, capacity=0.2)
    assert tighter.feasible() and any(o and o.variant == "small" for o in tighter.choice.values())


def test_frame_rate_weights_who_keeps_accuracy() -> None:
    busy, quiet = client("busy", 20.0, fps=30), client("quiet", 20.0, fps=1)
    result = map_clients([busy, quiet], OPTIONS, capacity=0.30)
    assert result.feasible()
    chosen = {k: v for k, v in result.choice.items() if v is not None}
    # stepping the busy client down saves 30x the load of stepping the quiet one
    assert chosen["quiet"].accuracy >= chosen["busy"].accuracy


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="bandwidth 0"):
        ClientState("a", 0, 0.1, 10)
    with pytest.raises(ValueError, match="capacity 0"):
        map_clients([client("a", 5.0)], OPTIONS, capacity=0)


def test_a_client_steps_past_an_option_that_is_dearer_and_less_accurate() -> None:
    # an int8 copy: more accurate and cheaper than "mid"; under load the client must still
    # be able to go below it, to "small"
    options = [
        Option("big_int8", 256, 0.90, 20_000, 0.010, 0.010),
        Option("mid", 200, 0.80, 12_000, 0.015, 0.015),
        Option("small", 128, 0.60, 5_000, 0.004, 0.003),
    ]
    result = map_clients([client("a", 50.0, fps=10)], options, capacity=0.05)
    chosen = result.choice["a"]
    assert chosen is not None and chosen.variant == "small" and result.feasible()


def test_head_of_line_a_slow_batch_delays_every_client_on_the_device() -> None:
    options = [
        Option("big", 256, 0.9, 10_000, 0.050, 0.025, batch_s=0.050),
        Option("mid", 200, 0.8, 8_000, 0.020, 0.010, batch_s=0.020),
        Option("small", 128, 0.6, 4_000, 0.005, 0.003, batch_s=0.005),
    ]
    alone = map_clients([client("a", 50.0)], options, capacity=1.0)
    assert alone.choice["a"] == options[0]  # 50 ms of its own batch fits 85 ms
    # behind a batch of its own kind, 50 + 50 ms does not: "mid" (20 + 20 ms) does
    shared = map_clients([client("a", 50.0)], options, capacity=1.0, head_of_line=True)
    assert shared.choice["a"] == options[1]
