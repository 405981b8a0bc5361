"""Batch policies: pure decisions over a queue snapshot, a latency model and `now`.

A policy never reads the clock, never touches the queue and never does I/O. The mechanism
(`rheostat.devices.runner`) asks `next_batch` whenever the device is idle and the queue
changed or a timer the policy asked for fired, and carries out the returned `BatchDecision`:

- `drop`: indices of queued requests that can no longer meet their deadline even if they
  ran alone right now (now + T_proc(1) > deadline). Every policy drops these, so no request
  is ever run only to be late (the architecture's invariant), and the mechanism answers them
  with a deadline error.
- `batch_size`: release that many requests from the head (after the drops) now, or
- `wait_until_s`: ask again at that time (None: only when a request arrives).

The queue is ordered by the mechanism (priority level, then arrival); the policies only look
at it. Three policies, picked by name through `make_policy`:

- `fixed`: batches of exactly `size`; a partial batch goes only when waiting longer would
  make its head late.
- `max_delay`: Triton's dynamic batcher: a full batch or the largest preferred size goes at
  once, otherwise wait until the oldest request has waited `max_queue_delay`.
- `deadline_aware`: Proteus (ASPLOS'24, Sec. 5): release the largest batch that still meets
  every deadline in it; if the whole queue fits and one more request could still join, wait
  for the (q+1)-th request only while now < T_exp(head) - T_proc(q+1).

  Two changes to the published rule, both for a live server rather than a simulator:
  `margin_s` is kept between a batch's expected finish and its earliest deadline (timers fire
  late and batches run slower than their median), and the wait is capped at `max_wait_s`
  after the oldest arrival. Without the cap a lone request under light load waits until
  almost its deadline for a partner that is not coming: Proteus' rule alone gives every
  request at low load a latency close to its SLO. Likewise, when the mechanism's estimate
  of the time between arrivals says the next request will not come before the wait would
  end, the batch goes at once (one client in a closed loop never waits for itself).
- `aimd`: Clipper (NSDI'17, Sec. 4.3): no waiting; a batch takes up to a cap that grows by
  one after every batch that met its deadlines and shrinks by 10 % after one that did not.
  The only policy with state: the mechanism reports each batch's outcome through `feedback`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rheostat.profiling import LatencyModel
from rheostat.repository.schema import BatchPolicyName, DynamicBatching

__all__ = [
    "AimdPolicy",
    "BatchDecision",
    "BatchPolicy",
    "DeadlineAwarePolicy",
    "FixedSizePolicy",
    "MaxDelayPolicy",
    "QueuedRequest",
    "hopeless",
    "make_policy",
]


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    """What a policy may know about one queued request."""

    arrival_s: float
    deadline_s: float


@dataclass(frozen=True, slots=True)
class BatchDecision:
    batch_size: int = 0
    wait_until_s: float | None = None
    drop: tuple[int, ...] = ()


class BatchPolicy(Protocol):
    def next_batch(
        self,
        queue: Sequence[QueuedRequest],
        latency: LatencyModel,
        now_s: float,
        max_batch_size: int,
        mean_interarrival_s: float | None = None,
    ) -> BatchDecision:
        """`mean_interarrival_s`: the mechanism's estimate of the time between arrivals."""
        ...


def hopeless(
    queue: Sequence[QueuedRequest], latency: LatencyModel, now_s: float
) -> tuple[int, ...]:
    """Indices of requests that would be late even as a batch of one started now."""
    finish_alone = now_s + latency.latency_s(1)
    return tuple(i for i, r in enumerate(queue) if finish_alone > r.deadline_s)


def _split(
    queue: Sequence[QueuedRequest], latency: LatencyModel, now_s: float
) -> tuple[tuple[int, ...], list[QueuedRequest]]:
    drop = hopeless(queue, latency, now_s)
    dropped = set(drop)
    return drop, [r for i, r in enumerate(queue) if i not in dropped]


def _largest_feasible(
    live: Sequence[QueuedRequest], latency: LatencyModel, now_s: float, cap: int, margin_s: float
) -> int:
    """Largest b <= cap such that the first b requests all finish by their deadlines."""
    earliest = float("inf")
    best = 0
    for b, request in enumerate(live[:cap], start=1):
        earliest = min(earliest, request.deadline_s)
        if now_s + latency.latency_s(b) + margin_s <= earliest:
            best = b
    return best


@dataclass(frozen=True)
class FixedSizePolicy:
    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"fixed batch size {self.size} must be >= 1")

    def next_batch(
        self,
        queue: Sequence[QueuedRequest],
        latency: LatencyModel,
        now_s: float,
        max_batch_size: int,
        mean_interarrival_s: float | None = None,
    ) -> BatchDecision:
        drop, live = _split(queue, latency, now_s)
        size = min(self.size, max_batch_size)
        if len(live) >= size:
            return BatchDecision(size, None, drop)
        if not live:
            return BatchDecision(0, None, drop)
        latest_start = min(r.deadline_s for r in live) - latency.latency_s(len(live))
        if now_s >= latest_start:
            return BatchDecision(len(live), None, drop)
        return BatchDecision(0, latest_start, drop)


@dataclass(frozen=True)
class MaxDelayPolicy:
    max_queue_delay_s: float
    preferred_batch_sizes: tuple[int, ...] = ()

    def next_batch(
        self,
        queue: Sequence[QueuedRequest],
        latency: LatencyModel,
        now_s: float,
        max_batch_size: int,
        mean_interarrival_s: float | None = None,
    ) -> BatchDecision:
        drop, live = _split(queue, latency, now_s)
        if not live:
            return BatchDecision(0, None, drop)
        if len(live) >= max_batch_size:
            return BatchDecision(max_batch_size, None, drop)
        preferred = [p for p in self.preferred_batch_sizes if p <= len(live)]
        if preferred:
            return BatchDecision(max(preferred), None, drop)
        release_at = min(r.arrival_s for r in live) + self.max_queue_delay_s
        if now_s >= release_at:
            return BatchDecision(len(live), None, drop)
        return BatchDecision(0, release_at, drop)


@dataclass(frozen=True)
class DeadlineAwarePolicy:
    max_wait_s: float = float("inf")
    margin_s: float = 0.0
    shed_for_goodput: bool = False

    def next_batch(
        self,
        queue: Sequence[QueuedRequest],
        latency: LatencyModel,
        now_s: float,
        max_batch_size: int,
        mean_interarrival_s: float | None = None,
    ) -> BatchDecision:
        drop, live = _split(queue, latency, now_s)
        if not live:
            return BatchDecision(0, None, drop)
        q = _largest_feasible(live, latency, now_s, max_batch_size, self.margin_s)
        if self.shed_for_goodput and q < min(len(live), max_batch_size):
            skip, size = _goodput_batch(live, latency, now_s, max_batch_size, self.margin_s, q)
            if skip:
                shed = _indices_of(queue, live[:skip])
                return BatchDecision(size, None, tuple(sorted(drop + shed)))
        if q == len(live) and q < max_batch_size:
            # Proteus: wait for the (q+1)-th only while it could still join in time.
            join_by = min(r.deadline_s for r in live) - latency.latency_s(q + 1) - self.margin_s
            wait_until = min(join_by, min(r.arrival_s for r in live) + self.max_wait_s)
            expected_next = max(r.arrival_s for r in live) + (mean_interarrival_s or 0.0)
            if now_s < wait_until and expected_next <= wait_until:
                return BatchDecision(0, wait_until, drop)
        return BatchDecision(max(q, 1), None, drop)


GOODPUT_GAIN = 1.5
"""A head is skipped only for a batch that serves at least this many times more requests
per second: where batching gains little (a CNN on one CPU core), dropping a request that
could still make it buys nothing, and a re-plan or the degrade ladder will do better."""


def _goodput_batch(
    live: Sequence[QueuedRequest],
    latency: LatencyModel,
    now_s: float,
    cap: int,
    margin_s: float,
    q: int,
) -> tuple[int, int]:
    """(requests to skip at the head, batch size after them): the choice that lets the most
    queued requests finish in time, or (0, q) when skipping none is as good.

    Under a backlog the head of the queue is always close to its deadline, so the largest
    batch that meets every deadline in it shrinks to one, the device's throughput collapses
    to its batch-1 rate and the backlog never clears (a metastable failure). Skipping the k
    requests that keep the batch small restores full batches (considered only when that
    serves `GOODPUT_GAIN` times the requests per second); the skipped ones are answered
    at once. Each choice is scored by replaying the queue behind it in full batches
    (`_num_on_time`), so a head is skipped only when that serves more of the queue.
    """
    options = [(0, q)]
    best_rate = GOODPUT_GAIN * q / latency.latency_s(max(q, 1))
    for skip in range(1, len(live)):
        size = _largest_feasible(live[skip:], latency, now_s, cap, margin_s)
        if size and size / latency.latency_s(size) > best_rate:
            best_rate = size / latency.latency_s(size)
            options.append((skip, size))
        if size >= min(cap, len(live) - skip):
            break
    scores = [_num_on_time(live, latency, now_s, cap, margin_s, *o) for o in options]
    return options[max(range(len(options)), key=lambda i: (scores[i], -i))]


def _num_on_time(
    live: Sequence[QueuedRequest],
    latency: LatencyModel,
    now_s: float,
    cap: int,
    margin_s: float,
    skip: int,
    first: int,
) -> int:
    """Queued requests finishing by their deadlines if the head `skip` are dropped, `first`
    run now and the rest follow in batches of `cap` (arrivals to come ignored)."""
    finish = now_s
    on_time, start, size = 0, skip, max(first, 1)
    while start < len(live):
        finish += latency.latency_s(size)
        batch = live[start : start + size]
        on_time += sum(1 for r in batch if finish + margin_s <= r.deadline_s)
        start += size
        size = min(cap, len(live) - start)
    return on_time


def _indices_of(queue: Sequence[QueuedRequest], chosen: Sequence[QueuedRequest]) -> tuple[int, ...]:
    ids = {id(r) for r in chosen}
    return tuple(i for i, r in enumerate(queue) if id(r) in ids)


@dataclass
class AimdPolicy:
    """Additive increase, multiplicative decrease of the batch cap (Clipper)."""

    cap: int = 1
    backoff: float = 0.9

    def __post_init__(self) -> None:
        if self.cap < 1 or not 0 < self.backoff < 1:
            raise ValueError(f"AIMD cap {self.cap} must be >= 1, backoff {self.backoff} in (0, 1)")

    def next_batch(
        self,
        queue: Sequence[QueuedRequest],
        latency: LatencyModel,
        now_s: float,
        max_batch_size: int,
        mean_interarrival_s: float | None = None,
    ) -> BatchDecision:
        drop, live = _split(queue, latency, now_s)
        return BatchDecision(min(len(live), self.cap, max_batch_size), None, drop)

    def feedback(self, batch_size: int, late: bool, max_batch_size: int) -> None:
        """A batch of `batch_size` finished; `late`: some request in it missed its deadline."""
        if late:
            self.cap = max(1, int(self.cap * self.backoff))
        elif batch_size >= self.cap:
            self.cap = min(self.cap + 1, max_batch_size)


PolicyFactory = Callable[[DynamicBatching, int], BatchPolicy]

_REGISTRY: dict[BatchPolicyName, PolicyFactory] = {
    BatchPolicyName.FIXED: lambda cfg, max_b: FixedSizePolicy(
        max(cfg.preferred_batch_size, default=max_b)
    ),
    BatchPolicyName.MAX_DELAY: lambda cfg, max_b: MaxDelayPolicy(
        cfg.max_queue_delay_microseconds / 1e6, cfg.preferred_batch_size
    ),
    BatchPolicyName.DEADLINE_AWARE: lambda cfg, max_b: DeadlineAwarePolicy(
        cfg.max_queue_delay_microseconds / 1e6
        if cfg.max_queue_delay_microseconds
        else float("inf"),
        cfg.latency_margin_microseconds / 1e6,
        cfg.shed_for_goodput,
    ),
    BatchPolicyName.AIMD: lambda cfg, max_b: AimdPolicy(),
}


def make_policy(config: DynamicBatching, max_batch_size: int) -> BatchPolicy:
    """The policy a family's `dynamic_batching` section names."""
    return _REGISTRY[config.policy](config, max_batch_size)
