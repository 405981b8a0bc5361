"""The per-device mechanism: bounded queues per replica, batch dispatch, completion.

One `DeviceRunner` per device. It owns a queue for each variant loaded on the device (a
*replica*), asks each replica's batch policy what to do whenever the device is idle, runs one
batch at a time on its `Executor` (a worker process live, a profiled-latency backend in the
simulator) and answers every item exactly once: a result, a deadline error for requests the
policy dropped, or a retry through `on_lost` when the executor died with the batch.

It reads time only from its `Clock` and schedules only through `clock.call_at`, so it runs
unchanged on the virtual clock.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from rheostat.batching import BatchPolicy, QueuedRequest
from rheostat.clock import Clock, Timer
from rheostat.devices.device import Device
from rheostat.devices.power import default_power
from rheostat.devices.work import Batch, BatchResult, ItemResult, WorkItem
from rheostat.errors import (
    BackendError,
    DeadlineError,
    InvalidRequestError,
    NotReadyError,
    QueueFullError,
)
from rheostat.profiling import GuardedLatency, LatencyModel, LatencyProfile

__all__ = ["DEFAULT_PRIORITY", "DeviceRunner", "Executor", "ReplicaQueue"]

log = logging.getLogger("rheostat.devices")

DEFAULT_PRIORITY = 100  # Triton: 1 is the highest level; 0 (unset) means the default level


class Executor(Protocol):
    """Runs one batch at a time and calls back exactly once per batch."""

    @property
    def ready(self) -> bool: ...

    def execute(self, batch: Batch, on_done: Callable[[BatchResult], None]) -> None: ...


@dataclass
class ReplicaQueue:
    """The queue of one variant on one device, ordered by (priority level, arrival)."""

    key: str
    policy: BatchPolicy
    profile: LatencyProfile
    max_batch_size: int
    max_queue_size: int
    items: list[WorkItem] = field(default_factory=list)
    draining: bool = False
    mean_interarrival_s: float | None = None
    last_arrival_s: float | None = None
    worst: LatencyProfile | None = None
    """A staged variant's latency when every row runs every stage: what a deadline is
    checked against at admission (`profile` is its expected cost)."""

    def guarded(self, *, worst: bool = False) -> LatencyModel:
        """The latency that deadlines are planned on: the profile (or a staged variant's
        worst case) stretched by the tail ratio the profile has observed."""
        if worst and self.worst is not None:
            return GuardedLatency(self.worst, self.profile)
        return self.profile.guarded

    def note_arrival(self, now_s: float) -> None:
        """EWMA of the time between arrivals (weight 0.2 on the newest gap)."""
        if self.last_arrival_s is not None:
            gap = now_s - self.last_arrival_s
            old = self.mean_interarrival_s
            self.mean_interarrival_s = gap if old is None else old + 0.2 * (gap - old)
        self.last_arrival_s = now_s

    def insert(self, item: WorkItem) -> None:
        bisect.insort(self.items, item, key=lambda i: (_level(i), i.seq))

    def retry_after_s(self) -> float:
        """What a refused client is told to wait: the backlog, in whole seconds, at least 1."""
        return max(1.0, float(math.ceil(self.backlog_s())))

    def backlog_s(self, extra: int = 0, *, worst: bool = False) -> float:
        """Time to run everything queued (and `extra` more), in full batches (an admission
        estimate, guarded by the observed tail); with `worst`, at a staged variant's worst
        case."""
        profile = self.guarded(worst=worst)
        n = len(self.items) + extra
        full, rest = divmod(n, self.max_batch_size)
        estimate = full * profile.latency_s(self.max_batch_size)
        return estimate + (profile.latency_s(rest) if rest else 0.0)


def _level(item: WorkItem) -> int:
    return item.priority if item.priority > 0 else DEFAULT_PRIORITY


class DeviceRunner:
    def __init__(
        self,
        device: Device,
        clock: Clock,
        executor: Executor,
        on_lost: Callable[[WorkItem], None],
    ) -> None:
        self.device = device
        self.clock = clock
        self.executor = executor
        self.on_lost = on_lost
        self.replicas: dict[str, ReplicaQueue] = {}
        self.busy_until_s: float | None = None
        self._timer: Timer | None = None
        self._seq = itertools.count()
        self._batch_ids = itertools.count(1)
        self.num_batches = 0
        self.on_batch: Callable[[str, int, float], None] | None = None  # stats hook
        self.power = default_power(device)  # the engine sets the measured or configured one

    # -- replicas ---------------------------------------------------------------------------
    def add_replica(self, replica: ReplicaQueue) -> None:
        self.replicas[replica.key] = replica

    def drain(self, key: str) -> None:
        """Stop admitting to `key`; it is removed once its queue is empty."""
        if key in self.replicas:
            self.replicas[key].draining = True
            self._reap()

    def _reap(self) -> None:
        for key in [k for k, r in self.replicas.items() if r.draining and not r.items]:
            del self.replicas[key]

    # -- admission --------------------------------------------------------------------------
    def submit(self, key: str, *items: WorkItem) -> None:
        """Queue `items` (one request's inputs) on replica `key`, all or none.

        Raises QueueFullError when they do not all fit, NotReadyError when `key` is not
        loaded here. The policy is consulted once, after all of them are queued, and the
        request counts as one arrival.
        """
        replica = self.replicas.get(key)
        if replica is None or replica.draining:
            raise NotReadyError(f"variant {key} is not loaded on device {self.device.name}")
        if len(replica.items) + len(items) > replica.max_queue_size:
            retry = replica.retry_after_s()
            raise QueueFullError(
                f"queue of {key} on {self.device.name} is full "
                f"({len(replica.items)} of {replica.max_queue_size} requests queued); "
                f"retry in {retry:.0f} s",
                retry_after_s=retry,
            )
        now = self.clock.now()
        replica.note_arrival(now)
        for item in items:
            item.seq = next(self._seq)
            item.enqueued_s = now
            item.device = self.device.name
            replica.insert(item)
        self.schedule()

    def evacuate(self) -> None:
        """The device is gone for good: every queued item is retried once elsewhere (through
        `on_lost`) or, already retried, failed with a clear error."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items = [item for replica in self.replicas.values() for item in replica.items]
        for replica in self.replicas.values():
            replica.items = []
        self._reap()
        if items:
            self._retry_or_fail(items)

    def queue_depth(self, key: str) -> int:
        replica = self.replicas.get(key)
        return len(replica.items) if replica else 0

    def expected_finish_s(self, key: str, items: int = 1) -> float:
        """When a request of `items` rows queued now on `key` would finish, by the latency
        profiles: after the batch in flight and the other replicas' backlogs, in the last
        batch of its own replica's queue (it joins a batch rather than running alone after
        them). A staged variant's own queue counts at its worst case."""
        now = self.clock.now()
        busy = max(0.0, (self.busy_until_s or now) - now)
        mine = self.replicas[key]
        others = sum(r.backlog_s() for r in self.replicas.values() if r is not mine and r.items)
        return now + busy + others + mine.backlog_s(extra=items, worst=True)

    # -- scheduling -------------------------------------------------------------------------
    def schedule(self) -> None:
        """Ask the policies what to run; dispatch one batch or set a timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.busy_until_s is not None:
            return
        now = self.clock.now()
        if not self.executor.ready:
            self._drop_hopeless(now)
            return
        best: tuple[tuple[int, float], ReplicaQueue, int] | None = None
        wake = math.inf
        waiting: list[tuple[float, ReplicaQueue]] = []
        for replica in list(self.replicas.values()):
            if not replica.items:
                continue
            view = [QueuedRequest(i.arrival_s, i.deadline_s) for i in replica.items]
            decision = replica.policy.next_batch(
                view, replica.guarded(), now, replica.max_batch_size, replica.mean_interarrival_s
            )
            self._drop(replica, decision.drop)
            if decision.batch_size and replica.items:
                head = replica.items[0]
                rank = (_level(head), head.deadline_s)
                if best is None or rank < best[0]:
                    best = (rank, replica, decision.batch_size)
            elif decision.wait_until_s is not None:
                wake = min(wake, decision.wait_until_s)
                waiting.append((decision.wait_until_s, replica))
        self._reap()
        if best is not None:
            best = self._preempted(best, waiting, now)
            self._dispatch(best[1], best[2])
        elif wake < math.inf:
            self._timer = self.clock.call_at(wake, self.schedule)

    def _preempted(
        self,
        best: tuple[tuple[int, float], ReplicaQueue, int],
        waiting: list[tuple[float, ReplicaQueue]],
        now: float,
    ) -> tuple[tuple[int, float], ReplicaQueue, int]:
        """The batch to run now. A replica whose policy waits for more requests until its
        last moment to start would find the device busy then if `best` ran now: its
        policy sees its own queue only. When its head's deadline comes first, it runs now
        with what it has (earliest deadline first across the device's replicas)."""
        ends = now + best[1].guarded().latency_s(best[2])
        for wait_until, replica in waiting:
            if not replica.items or wait_until >= ends:
                continue
            head = replica.items[0]
            rank = (_level(head), head.deadline_s)
            if rank < best[0]:
                best = (rank, replica, min(len(replica.items), replica.max_batch_size))
        return best

    def _drop(self, replica: ReplicaQueue, indices: tuple[int, ...]) -> None:
        if not indices:
            return
        doomed = set(indices)
        dropped = [item for i, item in enumerate(replica.items) if i in doomed]
        replica.items = [item for i, item in enumerate(replica.items) if i not in doomed]
        now = self.clock.now()
        for item in dropped:
            item.on_done(_deadline_error(item, replica, now))

    def _drop_hopeless(self, now: float) -> None:
        """While the executor is down, still answer requests that cannot make it."""
        wake = math.inf
        for replica in self.replicas.values():
            alone = replica.guarded().latency_s(1)
            late = tuple(i for i, it in enumerate(replica.items) if now + alone >= it.deadline_s)
            self._drop(replica, late)
            wake = min([wake, *(it.deadline_s - alone for it in replica.items)])
        if wake < math.inf:
            self._timer = self.clock.call_at(wake, self.schedule)

    def _dispatch(self, replica: ReplicaQueue, size: int) -> None:
        items, replica.items = replica.items[:size], replica.items[size:]
        batch = Batch(next(self._batch_ids), replica.key, tuple(i.payload for i in items))
        started = self.clock.now()
        self.busy_until_s = started + replica.guarded().latency_s(size)
        self.num_batches += 1
        self.executor.execute(batch, lambda result: self._complete(replica, items, started, result))

    def _complete(
        self, replica: ReplicaQueue, items: list[WorkItem], started_s: float, result: BatchResult
    ) -> None:
        self.busy_until_s = None
        if result.lost:
            self._retry_or_fail(items)
        else:
            if not result.error:
                # The whole dispatch-to-answer time (IPC and input decoding included) is
                # what the batch policy must plan with, not the session's run time alone.
                replica.profile.observe(len(items), self.clock.now() - started_s)
            self._answer(replica, items, started_s, result)
            feedback = getattr(replica.policy, "feedback", None)
            if feedback is not None:  # a stateful policy (AIMD) learns each batch's outcome
                now = self.clock.now()
                late = any(now > item.deadline_s for item in items)
                feedback(len(items), late, replica.max_batch_size)
            if self.on_batch is not None:
                self.on_batch(replica.key, len(items), result.compute_s)
        self._reap()
        self.schedule()

    def _answer(
        self, replica: ReplicaQueue, items: list[WorkItem], started_s: float, result: BatchResult
    ) -> None:
        now = self.clock.now()
        variant = replica.key
        busy_s = result.compute_s or now - started_s
        energy_j = self.power.item_energy_j(busy_s, len(items))
        for index, item in enumerate(items):
            if result.error:
                item.on_done(BackendError(f"inference on {variant} failed: {result.error}"))
                continue
            output = result.outputs[index]
            if isinstance(output, str):
                item.on_done(InvalidRequestError(f"input for {variant}: {output}"))
                continue
            item.on_done(
                ItemResult(
                    output=output,
                    variant=variant,
                    device=self.device.name,
                    queue_s=started_s - item.arrival_s,
                    compute_s=now - started_s,
                    finished_s=now,
                    stage=result.stages[index] if result.stages else 0,
                    energy_j=energy_j,
                )
            )

    def _retry_or_fail(self, items: list[WorkItem]) -> None:
        retried = sum(1 for item in items if item.attempts == 0)
        log.warning(
            "worker of %s lost with %d requests in flight or queued: retrying %d, failing %d",
            self.device.name, len(items), retried, len(items) - retried,
        )  # fmt: skip
        for item in items:
            if item.attempts == 0:
                item.attempts += 1
                self.on_lost(item)
            else:
                item.on_done(
                    NotReadyError(
                        f"the worker of device {self.device.name} was lost while holding this "
                        f"request on {item.family}.{item.variant}, after one retry already"
                    )
                )


def _deadline_error(item: WorkItem, replica: ReplicaQueue, now: float) -> DeadlineError:
    need_ms = replica.guarded().latency_s(1) * 1e3
    left_ms = (item.deadline_s - now) * 1e3
    return DeadlineError(
        f"deadline cannot be met on {replica.key}: {left_ms:.1f} ms left of "
        f"{(item.deadline_s - item.arrival_s) * 1e3:.1f} ms, the variant needs at least "
        f"{need_ms:.1f} ms; dropped before running"
    )
