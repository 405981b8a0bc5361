"""The server's registry of edge clients and their (variant, input size) instructions.

Every request that carries a `client_id` reports the client's conservative uplink estimate,
its end-to-end SLO, its frame rate, its round-trip floor and the size of the frame it sent.
The registry keeps one entry per client and family, and maps the family's clients with the
collective policy (`map_clients`):

* when a client joins, when one leaves (silent for `expire_s`), when a client's report says
  its option no longer fits its SLO (its link sagged), and every `period_s`;
* over the family's *options*: one per variant that takes images, at that variant's input
  size (the size a client should send), with its accuracy and its measured cost;
* within the devices' capacity (device-seconds per second, less headroom), scaled by what
  the server delivers: profiles are taken on idle cores, and on a small shared machine the
  front end, the clients and anything else take their share. Each answer to a mapped client
  tells the registry whether the server met its deadline (`outcome`); every period, more
  than `MISS_BUDGET` missed scales the capacity down by `BACKOFF`, and after `CALM_S`
  without a miss it grows back by `RECOVERY` (AIMD, as TCP, on the planned load).

Each answer then tells its client what to send next (`Instruction`): the input size and, for
a variant scored at several JPEG qualities, the quality. How many bytes a frame takes at a
size is learnt per client from what it sends (bytes per square pixel of the frame's shorter
side, brought to quality 85 by `JPEG_SIZE`), since it depends on the camera's scene and
encoder; a quality's share of that is the same for every client.

Pure and on the clock the caller passes (`now`): the simulator drives the very same object.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rheostat.network.mapping import ClientMap, ClientState, Option, map_clients

__all__ = [
    "BYTES_PER_SQUARE_PX",
    "DEFAULT_QUALITY",
    "JPEG_SIZE",
    "ClientRegistry",
    "ClientReport",
    "Instruction",
    "OptionCost",
    "by_quality",
    "frame_bytes_at",
    "jpeg_size",
]

BYTES_PER_SQUARE_PX = 0.3
"""A JPEG frame's bytes per square pixel of its shorter side, until a client's own frames
say otherwise (a 4:3 photo at quality 85 takes about 0.2-0.4)."""

DEFAULT_QUALITY = 85  # what a client sends when told no quality
JPEG_SIZE = {10: 0.24, 30: 0.41, 50: 0.54, 70: 0.70, 85: 1.0, 95: 1.76}
"""A JPEG frame's bytes at each quality over its bytes at quality 85: the mean over 100
augmented sample photos sent at 146-297 px (each size within 5 % of it; a test measures it
again); between two qualities, linear."""


MISS_BUDGET = 0.01
"""The share of a period's mapped frames the server may miss (its own deadline: dropped or
answered late) before the registry plans with less capacity. A stray miss is noise (a busy
machine, a burst); overload misses many frames every period."""
BACKOFF = 0.8
RECOVERY = 0.05
CALM_S = 5.0
MIN_SCALE = 0.1
MIN_OUTCOMES = 20


@dataclass(frozen=True)
class ClientReport:
    """What one request says about its client."""

    client_id: str
    slo_s: float  # end to end
    fps: float
    bandwidth_mbps: float | None  # the client's conservative estimate; None: none yet
    rtt_s: float = 0.0
    body_bytes: int = 0
    frame_px: int | None = None  # the shorter side of the frame it sent
    jpeg_quality: int | None = None  # the quality it was encoded at (None: 85)

    def __post_init__(self) -> None:
        if not self.client_id or len(self.client_id) > 128:
            raise ValueError(f"client_id {self.client_id!r} must be 1 to 128 characters")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} must be in [1, 100]")


@dataclass(frozen=True)
class OptionCost:
    """One option of a family, before the client's frame size is known."""

    variant: str
    size_px: int  # the shorter side of the frames this variant wants
    accuracy: float
    latency_s: float  # one frame's inference
    cost_s: float  # device-seconds per frame
    frame_bytes: int | None = None  # fixed (a tensor); None: by the size (an image)
    batch_s: float = 0.0  # how long one of its batches holds a device
    quality: int | None = None  # the JPEG quality of an image option (None: 85)


@dataclass(frozen=True)
class Instruction:
    variant: str | None  # None: no option can meet the client's SLO at its bandwidth
    input_size: int  # the shorter side of the frames to send next
    jpeg_quality: int | None = None  # the quality to encode them at (None: the client's own)


@dataclass
class _Client:
    report: ClientReport
    last_s: float
    bytes_per_px2: float = BYTES_PER_SQUARE_PX


@dataclass
class _Family:
    clients: dict[str, _Client] = field(default_factory=dict)
    mapping: ClientMap | None = None
    mapped_s: float = -math.inf
    changed: bool = True  # a join or a leave since the last mapping
    scale: float = 1.0  # of the devices' capacity, as delivered (see the module notes)
    answered: int = 0  # mapped frames the server answered or dropped this period
    missed: int = 0
    judged_s: float = 0.0
    calm_s: float = 0.0  # the last scale change or miss


class ClientRegistry:
    def __init__(
        self,
        options: Callable[[str], Sequence[OptionCost]],
        capacity: Callable[[str], float],
        *,
        period_s: float = 1.0,
        expire_s: float = 5.0,
        margin: float = 0.85,
    ) -> None:
        """`options(family)` and `capacity(family)` are asked at every mapping, so they may
        follow loads, swaps and lost devices. An option's `latency_s` is its own batch's time;
        the wait for a batch in flight is the mapping's (`head_of_line`)."""
        if period_s <= 0 or expire_s <= 0:
            raise ValueError(f"period_s {period_s} and expire_s {expire_s} must be > 0")
        self.options = options
        self.capacity = capacity
        self.period_s = period_s
        self.expire_s = expire_s
        self.margin = margin
        self.families: dict[str, _Family] = {}
        self.remaps = 0

    def report(self, family: str, report: ClientReport, now: float) -> Instruction:
        """Record a request's report; return what its client should send next."""
        state = self.families.setdefault(family, _Family())
        client = state.clients.get(report.client_id)
        if client is None:
            client = state.clients[report.client_id] = _Client(report, now)
            state.changed = True
        client.report, client.last_s = report, now
        if report.frame_px and report.body_bytes > 0:
            at_85 = jpeg_size(report.jpeg_quality or DEFAULT_QUALITY)
            sample = report.body_bytes / (report.frame_px**2 * at_85)
            client.bytes_per_px2 = 0.7 * client.bytes_per_px2 + 0.3 * sample
        self._expire(state, now)
        if state.changed or now - state.mapped_s >= self.period_s or self._misfit(state, client):
            self.remap(family, now)
        return self.instruction(family, report.client_id)

    def outcome(self, family: str, met: bool, now: float) -> None:
        """A mapped client's frame left the server: within its server-side deadline
        (`met`), or late, or dropped. Judged once a period (see the module notes)."""
        state = self.families.get(family)
        if state is None:
            return
        state.answered += 1
        state.missed += not met
        if now - state.judged_s < self.period_s:
            return
        if state.answered >= MIN_OUTCOMES and state.missed > MISS_BUDGET * state.answered:
            state.scale = max(MIN_SCALE, state.scale * BACKOFF)
            state.calm_s, state.changed = now, True
        elif state.missed:
            state.calm_s = now
        elif state.scale < 1.0 and now - state.calm_s >= CALM_S:
            state.scale = min(1.0, state.scale + RECOVERY)
            state.calm_s, state.changed = now, True
        state.answered = state.missed = 0
        state.judged_s = now

    def _misfit(self, state: _Family, client: _Client) -> bool:
        """Whether the client's mapped option no longer fits its SLO at its new report."""
        option = state.mapping.choice.get(client.report.client_id) if state.mapping else None
        if option is None or client.report.bandwidth_mbps is None:
            return False
        me = self._state(client, [])
        return option.end_to_end_s(me, 0.0) > self.margin * me.slo_s

    def _expire(self, state: _Family, now: float) -> None:
        gone = [c for c, v in state.clients.items() if now - v.last_s > self.expire_s]
        for client in gone:
            del state.clients[client]
        state.changed = state.changed or bool(gone)

    def remap(self, family: str, now: float) -> ClientMap | None:
        """Map `family`'s clients afresh (see the module notes)."""
        state = self.families.get(family)
        if state is None:
            return None
        self._expire(state, now)
        costs = list(self.options(family))
        state.mapped_s, state.changed = now, False
        if not costs or not state.clients:
            state.mapping = None
            return None
        options = [
            Option(
                c.variant, c.size_px, c.accuracy, _frame_bytes(c), c.latency_s, c.cost_s,
                c.batch_s, c.quality,
            )
            for c in costs
        ]  # fmt: skip
        states = [self._state(c, costs) for c in state.clients.values()]
        capacity = max(self.capacity(family) * state.scale, 1e-9)
        state.mapping = map_clients(
            states, options, capacity, margin=self.margin, head_of_line=True
        )
        self.remaps += 1
        return state.mapping

    def _state(self, client: _Client, costs: Sequence[OptionCost]) -> ClientState:
        r = client.report
        bandwidth = r.bandwidth_mbps
        if not bandwidth:
            # no estimate yet: a speed at which the smallest frame takes 60 % of the SLO,
            # so that nothing larger fits until the client has measured its link
            smallest = min(costs, key=_frame_bytes)
            bandwidth = _frame_bytes(smallest) * 8 / max(r.slo_s * 0.6, 1e-3) / 1e6
        return ClientState(
            r.client_id,
            bandwidth,
            r.slo_s,
            r.fps,
            r.rtt_s,
            frame_scale=client.bytes_per_px2 / BYTES_PER_SQUARE_PX,
        )

    def instruction(self, family: str, client_id: str) -> Instruction:
        """The client's mapped option; unmapped (unknown, or no option fits): the smallest
        input size, and no variant."""
        state = self.families.get(family)
        mapping = state.mapping if state is not None else None
        option = mapping.choice.get(client_id) if mapping is not None else None
        if option is not None:
            return Instruction(option.variant, option.size_px, option.quality)
        costs = self.options(family)
        if not costs:
            return Instruction(None, 0)
        smallest = min(costs, key=_frame_bytes)
        return Instruction(None, smallest.size_px, smallest.quality)

    def snapshot(self, now: float) -> dict[str, object]:
        """What `GET /rheostat/clients` shows: per family, its clients and their mapping."""
        out: dict[str, object] = {}
        for family, state in sorted(self.families.items()):
            self._expire(state, now)
            mapping = state.mapping
            choice: Mapping[str, Option | None] = mapping.choice if mapping else {}
            clients = []
            for cid, c in sorted(state.clients.items()):
                option = choice.get(cid)
                clients.append({
                    "client_id": cid,
                    "bandwidth_mbps": c.report.bandwidth_mbps,
                    "rtt_ms": round(c.report.rtt_s * 1e3, 3),
                    "fps": c.report.fps,
                    "e2e_slo_ms": round(c.report.slo_s * 1e3, 3),
                    "bytes_per_px2": round(c.bytes_per_px2, 4),
                    "seen_s_ago": round(now - c.last_s, 3),
                    "variant": option.variant if option else None,
                    "input_size": option.size_px if option else None,
                    "jpeg_quality": option.quality if option else None,
                })  # fmt: skip
            out[family] = {
                "clients": clients,
                "load": round(mapping.load, 4) if mapping else 0.0,
                "capacity": round(mapping.capacity, 4) if mapping else 0.0,
                "capacity_scale": round(state.scale, 4),
                "weighted_accuracy": round(mapping.weighted_accuracy, 4) if mapping else 0.0,
                "mapped_s_ago": round(now - state.mapped_s, 3),
            }
        return out


def jpeg_size(quality: int) -> float:
    """A JPEG frame's bytes at `quality` over its bytes at 85 (JPEG_SIZE, linear between)."""
    points = sorted(JPEG_SIZE.items())
    if quality <= points[0][0]:
        return points[0][1]
    for (q0, s0), (q1, s1) in itertools.pairwise(points):
        if quality <= q1:
            return s0 + (s1 - s0) * (quality - q0) / (q1 - q0)
    return points[-1][1]


def by_quality(accuracy: float, jpeg_accuracy: Mapping[int, float]) -> dict[int | None, float]:
    """An image variant's accuracy per JPEG quality its frames may be sent at: as scored
    (`jpeg_accuracy`), or, not scored, `accuracy` at the client's own quality (None)."""
    scored: dict[int | None, float] = dict(jpeg_accuracy.items())
    return scored or {None: accuracy}


def frame_bytes_at(size_px: int, quality: int | None = None) -> int:
    """A JPEG frame's bytes at `size_px` (its shorter side) and `quality` (None: 85), by
    BYTES_PER_SQUARE_PX and JPEG_SIZE."""
    share = jpeg_size(quality or DEFAULT_QUALITY)
    return max(round(BYTES_PER_SQUARE_PX * size_px**2 * share), 1)


def _frame_bytes(cost: OptionCost) -> int:
    if cost.frame_bytes is not None:
        return cost.frame_bytes
    return frame_bytes_at(cost.size_px, cost.quality)
