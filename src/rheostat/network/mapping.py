"""Collective client mapping: which (variant, input size, JPEG quality) each edge client
should use so that upload + queueing + inference fits its end-to-end SLO, maximising
frame-rate-weighted accuracy within the devices' capacity (Jellyfish's problem, RTSS'22,
which adapts the input size only; the quality is a second knob on the bytes sent).

Pure: it takes plain data (clients' conservative bandwidth estimates, SLOs and frame rates;
the options with their accuracy, frame size and costs) and returns a mapping, so the server
runs it periodically and on joins/leaves, and the simulator runs the very same function.

The policy, greedy and exact enough at edge scale (tens of clients, tens of options):

1. each client starts at its most accurate *feasible* option: upload of one frame at its
   bandwidth + the expected queueing + inference within `margin` of its SLO; its ladder
   holds only the feasible options cheaper than every more accurate one;
2. while the total device load (sum of fps x device-seconds per frame) exceeds capacity,
   move one client one step down its ladder of feasible options, the move that loses the
   least fps-weighted accuracy per device-second saved;
3. a client with no feasible option is mapped to None: its frames cannot make the SLO at
   its bandwidth, and the server tells it so (drop frames or lower the rate) instead of
   letting every frame arrive late.

With `head_of_line=True` (the server's case, where a device runs the batches of several
variants in turn), a frame may arrive just as the longest batch in use starts, and waits
for it: one expensive option slows every client on the device. The policy then tries each
cap on the options' batch time (`batch_s`): only options within the cap, every frame
waiting one capped batch. It keeps the cap that maps the most frames per second, then the
highest fps-weighted accuracy (a feasible load first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ClientMap", "ClientState", "Option", "map_clients"]


@dataclass(frozen=True)
class ClientState:
    client_id: str
    bandwidth_mbps: float  # conservative uplink estimate
    slo_s: float  # end to end: capture to answer
    fps: float
    rtt_s: float = 0.0  # the link's round-trip floor (answers travel back too)
    frame_scale: float = 1.0  # this client's frames over the options' `frame_bytes`

    def __post_init__(self) -> None:
        if (
            self.bandwidth_mbps <= 0 or self.slo_s <= 0 or self.fps <= 0 or self.rtt_s < 0
            or self.frame_scale <= 0
        ):  # fmt: skip
            raise ValueError(
                f"client {self.client_id!r}: bandwidth {self.bandwidth_mbps} Mbit/s, SLO "
                f"{self.slo_s} s, fps {self.fps} and frame scale {self.frame_scale} must be "
                f"> 0, rtt {self.rtt_s} s >= 0"
            )


@dataclass(frozen=True)
class Option:
    variant: str
    size_px: int
    accuracy: float
    frame_bytes: int  # one encoded frame at this size
    latency_s: float  # inference of one frame (in a batch the server forms), queue excluded
    cost_s: float  # device-seconds per frame at the batch size the server runs
    batch_s: float = 0.0  # how long one of its batches holds a device (others wait behind)
    quality: int | None = None  # the JPEG quality frames are sent at (None: the client's own)

    def upload_s(self, client: ClientState) -> float:
        return self.frame_bytes * client.frame_scale * 8 / (client.bandwidth_mbps * 1e6)

    def end_to_end_s(self, client: ClientState, queue_s: float) -> float:
        return client.rtt_s + self.upload_s(client) + queue_s + self.latency_s


@dataclass(frozen=True)
class ClientMap:
    choice: Mapping[str, Option | None]  # client -> option (None: no option fits its SLO)
    load: float  # device-seconds per second the mapping asks for
    capacity: float
    weighted_accuracy: float  # fps-weighted over mapped clients

    def feasible(self) -> bool:
        return self.load <= self.capacity + 1e-9


def _ladder(
    client: ClientState, options: Sequence[Option], queue_s: float, margin: float
) -> list[Option]:
    """Options whose end-to-end time fits, most accurate first, keeping only those cheaper
    than every more accurate one (the Pareto front of accuracy and device cost): each step
    down the ladder then saves device time. An int8 copy can be both more accurate and
    cheaper than a smaller fp32 model; without the front, a client at the int8 copy could
    not step past the dearer model below it."""
    fits = [o for o in options if o.end_to_end_s(client, queue_s) <= margin * client.slo_s]
    ladder: list[Option] = []
    for option in sorted(fits, key=lambda o: (-o.accuracy, o.cost_s, o.frame_bytes)):
        if not ladder or option.cost_s < ladder[-1].cost_s:
            ladder.append(option)
    return ladder


def map_clients(
    clients: Sequence[ClientState],
    options: Sequence[Option],
    capacity: float,
    *,
    queue_s: float = 0.0,
    margin: float = 0.85,
    head_of_line: bool = False,
) -> ClientMap:
    """The mapping (see the module notes). `capacity` is device-seconds per second (the
    number of devices, less headroom); `queue_s` the queueing each frame should expect."""
    if capacity <= 0 or not 0 < margin <= 1:
        raise ValueError(f"capacity {capacity} must be > 0 and margin {margin} in (0, 1]")
    if not head_of_line:
        return _map(clients, options, capacity, queue_s, margin)
    best: tuple[tuple[bool, float, float, float], ClientMap] | None = None
    for cap in sorted({o.batch_s for o in options}):
        allowed = [o for o in options if o.batch_s <= cap]
        mapping = _map(clients, allowed, capacity, queue_s + cap, margin)
        fps = {c.client_id: c.fps for c in clients}
        served = sum(fps[c] for c, o in mapping.choice.items() if o is not None)
        score = (mapping.feasible(), served, served * mapping.weighted_accuracy, -mapping.load)
        if best is None or score > best[0]:
            best = (score, mapping)
    return best[1] if best is not None else _map(clients, options, capacity, queue_s, margin)


def _map(
    clients: Sequence[ClientState],
    options: Sequence[Option],
    capacity: float,
    queue_s: float,
    margin: float,
) -> ClientMap:
    ladders = {c.client_id: _ladder(c, options, queue_s, margin) for c in clients}
    rung = {c.client_id: 0 for c in clients if ladders[c.client_id]}
    fps = {c.client_id: c.fps for c in clients}

    def load() -> float:
        return sum(fps[c] * ladders[c][r].cost_s for c, r in rung.items())

    total = load()
    while total > capacity:
        best: tuple[float, str] | None = None
        for client, r in rung.items():
            ladder = ladders[client]
            if r + 1 >= len(ladder):
                continue
            saved = fps[client] * (ladder[r].cost_s - ladder[r + 1].cost_s)
            if saved <= 0:
                continue
            lost = fps[client] * (ladder[r].accuracy - ladder[r + 1].accuracy)
            score = lost / saved
            if best is None or (score, client) < best:
                best = (score, client)
        if best is None:
            break  # every client is at its cheapest feasible option: over capacity anyway
        rung[best[1]] += 1
        total = load()
    choice: dict[str, Option | None] = {c.client_id: None for c in clients}
    for client, r in rung.items():
        choice[client] = ladders[client][r]
    mapped = [(fps[c], o) for c, o in choice.items() if o is not None]
    weight = sum(f for f, _ in mapped)
    accuracy = sum(f * o.accuracy for f, o in mapped) / weight if weight else 0.0
    return ClientMap(choice, total, capacity, accuracy)
