"""Admission: where a request goes, or why it is refused, before it is queued.

It runs on any clock and answers through callbacks (one per item), so the simulator uses
the same object as the server; the engine turns the callbacks into asyncio futures.

The data plane's decisions between decoding and queueing, kept apart from the engine's
lifecycle: the accuracy floor and the impossible deadline (400 / 504 at once), the order of
replicas to try (the plan's split, then the degrade ladder), the priority-dependent share of
a queue each request may fill, the per-app share cap, and shedding with 429 when no replica
is expected to meet the deadline. Also the one retry of a request whose worker died.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rheostat.apps import queue_fill_limit
from rheostat.clock import Clock
from rheostat.control.demand import DemandEstimator
from rheostat.devices.runner import DeviceRunner
from rheostat.devices.work import Outcome, Payload, WorkItem
from rheostat.errors import (
    DeadlineError,
    InvalidRequestError,
    NotReadyError,
    QueueFullError,
    RequestError,
)
from rheostat.plan import Replica
from rheostat.profiling import LatencyProfile
from rheostat.routing import Constraints, Router
from rheostat.stats import StatsBook

__all__ = ["Admission", "RequestOptions"]


@dataclass(frozen=True)
class RequestOptions:
    timeout_s: float | None = None  # from now; None: the family's default
    priority: int = 0
    min_accuracy: float = 0.0
    app: str = ""
    max_share: float = 1.0
    max_energy_j: float | None = None  # joules per request
    prefer: str | None = None  # a variant to try first (an edge client's mapped one)


class Admission:
    def __init__(
        self,
        clock: Clock,
        router: Router,
        runners: dict[str, DeviceRunner],
        profiles: dict[Replica, LatencyProfile],
        stats: StatsBook,
        ladder: bool = True,
    ) -> None:
        """`ladder=False`: a request goes only to the router's first pick (as in Proteus,
        whose routing follows the plan's split strictly), never down the degrade ladder."""
        self.clock = clock
        self.ladder = ladder
        self.router = router
        self.runners = runners
        self.profiles = profiles
        self.stats = stats
        self.app_demand = DemandEstimator(alpha=0.5)  # per family and per family/app

    def candidates(
        self, family: str, constraints: Constraints, now: float, deadline: float
    ) -> list[Replica]:
        if constraints.variant is not None:
            pinned = self.router.accuracy.get(f"{family}.{constraints.variant}", 0.0)
            if constraints.min_accuracy > pinned:
                raise InvalidRequestError(
                    f"min_accuracy {constraints.min_accuracy} is above the accuracy of the "
                    f"pinned variant {family}.{constraints.variant} ({pinned:.4f})"
                )
        best = self.router.best_variant(family)
        if best is not None and constraints.min_accuracy > best[1]:
            raise InvalidRequestError(
                f"min_accuracy {constraints.min_accuracy} is above the best loaded variant of "
                f"{family} ({best[0]}, accuracy {best[1]:.4f})"
            )
        candidates = self.router.candidates(family, constraints)
        if not candidates and constraints.max_energy_j is not None:
            unbounded = dataclasses.replace(constraints, max_energy_j=None)
            if fits := self.router.candidates(family, unbounded):
                cheapest = min(self.router.energy.get(r, 0.0) for r in fits)
                raise InvalidRequestError(
                    f"max_energy_j {constraints.max_energy_j:g} is below what any eligible "
                    f"variant of {family} needs per request ({cheapest:.3g} J at least)"
                )
        if not candidates:
            what = f"{family}.{constraints.variant}" if constraints.variant else family
            raise NotReadyError(f"model {what} is not loaded")
        fastest = min(self.profiles[r].latency_s(1) for r in candidates)
        if now + fastest > deadline:
            raise DeadlineError(
                f"deadline of {(deadline - now) * 1e3:.1f} ms cannot be met by {family}: "
                f"its fastest eligible variant needs {fastest * 1e3:.1f} ms per request"
            )
        return candidates

    def admit(
        self,
        family: str,
        candidates: list[Replica],
        payloads: Sequence[Payload],
        on_done: Sequence[Callable[[Outcome], None]],
        options: RequestOptions,
        now: float,
        deadline: float,
    ) -> Replica:
        """Queue every item on the first replica with room that should meet the deadline.

        Each item is answered exactly once through its `on_done` (one per payload); the
        replica chosen is returned.

        Candidates come in the router's order (the plan's split, then the degrade ladder).
        When none is expected to finish in time the request is shed with 429 and a
        Retry-After, rather than queued to miss its deadline.
        """
        last: RequestError | None = None
        self._check_share(family, candidates, options, now)
        fill = queue_fill_limit(options.priority)
        tried = candidates if self.ladder else candidates[:1]
        for index, replica in enumerate(tried):
            runner = self.runners[replica.device]
            queue = runner.replicas.get(replica.key)
            if queue is None:
                continue
            rung = index < len(tried) - 1
            if rung and len(queue.items) + len(payloads) > fill * queue.max_queue_size:
                continue  # leave this queue to higher priorities: take the next rung
            if runner.expected_finish_s(replica.key, len(payloads)) > deadline:
                last = QueueFullError(
                    f"no variant of {family} can meet the deadline of "
                    f"{(deadline - now) * 1e3:.0f} ms at the current load; tried "
                    f"{[c.key for c in tried]}",
                    retry_after_s=queue.retry_after_s(),
                )
                continue
            items = [
                WorkItem(
                    replica.family,
                    replica.variant,
                    payload,
                    now,
                    deadline,
                    done,
                    options.priority,
                )
                for payload, done in zip(payloads, on_done, strict=True)
            ]
            try:
                runner.submit(replica.key, *items)
            except (QueueFullError, NotReadyError) as exc:
                last = exc
                continue
            return replica
        if isinstance(last, QueueFullError):
            self.stats.record_rejection(family)
        raise last or NotReadyError(f"no replica of {family} is accepting requests")

    def _check_share(
        self, family: str, candidates: list[Replica], options: RequestOptions, now: float
    ) -> None:
        """Shed an app over its `max_share` of the family while the family is under pressure."""
        if options.app:
            self.app_demand.record(f"{family}/{options.app}", now)
        self.app_demand.record(family, now)
        if options.max_share >= 1.0 or not candidates:
            return
        first = self.runners[candidates[0].device].replicas.get(candidates[0].key)
        if first is None or len(first.items) < 0.5 * first.max_queue_size:
            return
        rates = self.app_demand.rates(now)
        share = rates.get(f"{family}/{options.app}", 0.0) / max(rates.get(family, 0), 1e-9)
        if share > options.max_share:
            raise QueueFullError(
                f"app {options.app!r} takes {share:.0%} of {family}'s load, over its "
                f"max_share of {options.max_share:.0%}, while {family} is under pressure",
                retry_after_s=1.0,
            )

    def retry(self, item: WorkItem) -> None:
        """A worker died with `item` in flight: queue it once more, elsewhere if possible."""
        constraints = Constraints(variant=item.variant, exclude_devices=frozenset({item.device}))
        candidates = self.router.candidates(item.family, constraints) or self.router.candidates(
            item.family, Constraints(variant=item.variant)
        )
        error: RequestError = NotReadyError(
            f"worker died and no replica of {item.family}.{item.variant} is left"
        )
        for replica in candidates:
            try:
                self.runners[replica.device].submit(replica.key, item)
                return
            except RequestError as exc:
                error = exc
        item.on_done(error)
