"""Replay a trace through the server's components on the virtual clock.

`simulate` builds a `SimCluster` (router, admission, device runners, batch policies) and a
`ControlPlane` (demand estimator, controller, planner) exactly as the server wires them,
with a `VirtualClock`, profiled devices and a `VirtualSolveRunner` (each plan takes effect
after the planner's measured solve time) and a model-load delay per changed device. Every
request of the trace arrives at its time and ends in one `Status`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from rheostat.admission import RequestOptions
from rheostat.clock import Stopwatch, VirtualClock
from rheostat.control.controller import PlanEvent, VirtualSolveRunner
from rheostat.control.plane import ControlPlane, split_of
from rheostat.devices.work import ItemResult, Outcome, Payload, PayloadKind
from rheostat.errors import DeadlineError, RequestError
from rheostat.plan import Replica
from rheostat.planning.baselines import restrict_variants
from rheostat.routing import Constraints
from rheostat.sim.cluster import ClusterSettings, SimCluster
from rheostat.sim.metrics import RequestLog, Requests, Status, Summary, summarize
from rheostat.sim.model import ClusterModel
from rheostat.sim.policies import PolicySpec, Replan
from rheostat.sim.traces import Trace

__all__ = ["RunResult", "SimSettings", "simulate"]

_PAYLOAD = Payload(PayloadKind.TENSOR, np.zeros(1, np.float32))
_ANY = Constraints()
_OPTIONS = RequestOptions()


@dataclass(frozen=True)
class SimSettings:
    load_time_s: float = 1.0
    """Time to load a variant on a device when a plan changes it."""
    seed: int = 0
    start_window_s: float = 10.0
    """Adaptive policies start from a plan for the trace's first this-many seconds."""
    solve_time_limit_s: float = 1.0
    latency_spread: bool = True
    """Draw each batch's time around the median (log-normal fitted to the tail); False: the
    median exactly (when the tail profile is a planning margin, not a measurement)."""
    first_plan: bool = True
    """Start from a plan for the trace's first window (static policies: its mean rates);
    False: start as the server does, the most accurate variant on every device."""
    solve_time_s: float | None = None
    """None: each plan takes effect after the planner's measured solve time; a number: after
    that fixed time (runs then repeat exactly, whatever the machine)."""

    def __post_init__(self) -> None:
        if self.load_time_s < 0 or self.start_window_s <= 0 or self.solve_time_limit_s <= 0:
            raise ValueError(
                f"load_time_s={self.load_time_s} must be >= 0, start_window_s="
                f"{self.start_window_s} and solve_time_limit_s={self.solve_time_limit_s} > 0"
            )


@dataclass
class RunResult:
    policy: str
    requests: Requests
    duration_s: float
    plans: list[PlanEvent]
    num_loads: int
    wall_s: float
    assignments: list[tuple[float, dict[str, tuple[str, str] | None]]] = field(default_factory=list)
    served: list[tuple[float, str]] = field(default_factory=list)
    """(arrival, `family.variant`) of every request answered with a result."""

    @cached_property
    def summary(self) -> Summary:
        return summarize(self.requests, self.duration_s)


def simulate(
    model: ClusterModel, trace: Trace, spec: PolicySpec, settings: SimSettings | None = None
) -> RunResult:
    settings = settings or SimSettings()
    clock = VirtualClock()
    median = restrict_variants(model.median, spec.variants)
    planning = restrict_variants(model.tail if spec.plan_on_tail else model.median, spec.variants)
    cluster = SimCluster(
        clock,
        model.devices,
        median,
        model.spread() if settings.latency_spread else {},
        ClusterSettings(
            batching=spec.dynamic_batching(),
            max_batch_size=spec.max_batch_size,
            routing=spec.routing,
            ladder=spec.ladder,
            load_time_s=settings.load_time_s,
            seed=settings.seed,
        ),
    )
    assignments: list[tuple[float, dict[str, tuple[str, str] | None]]] = []

    def apply_split(split: dict[str, dict[Replica, float]]) -> None:
        cluster.apply_split(split)
        assignments.append((clock.now(), plane.current.copy()))

    plane = ControlPlane(
        clock,
        model.devices,
        lambda: planning,
        lambda family: model.slo_s[family],
        spec.make_solve(),
        apply_split,
        VirtualSolveRunner(clock, settings.solve_time_s),
        config=spec.controller_config(),
        estimator=spec.estimator(),
        settings=spec.planning_settings(settings.solve_time_limit_s),
    )
    _install_first_plan(plane, cluster, trace, spec, settings)
    assignments.append((0.0, plane.current.copy()))
    if spec.replan is not Replan.STATIC:
        plane.start()
    log = RequestLog(trace.families)
    served: list[tuple[float, str]] = []
    with Stopwatch() as watch:
        _replay(clock, cluster, plane, trace, model, log, served)
        clock.run_until(trace.duration_s + _max_slo(trace, model) + 1.0)
        plane.stop()
    requests = log.freeze()
    if len(requests) != len(trace):
        raise RuntimeError(f"{len(trace) - len(requests)} requests got no answer")
    events = plane.controller.log if plane.controller else []
    return RunResult(
        spec.name, requests, trace.duration_s, list(events), cluster.num_loads, watch.elapsed_s,
        assignments, served,
    )  # fmt: skip


def _install_first_plan(
    plane: ControlPlane, cluster: SimCluster, trace: Trace, spec: PolicySpec, s: SimSettings
) -> None:
    """Static policies plan for the whole trace's mean rates; others for its first window.
    Without `first_plan`, every device starts on its family's most accurate variant."""
    if not s.first_plan:
        plane.current = {}
        cluster.install(_most_accurate_everywhere(plane, trace))
        return
    if spec.replan is Replan.STATIC or trace.duration_s <= s.start_window_s:
        rates = trace.mean_rates_rps()
    else:
        rates = trace.head(s.start_window_s).counts(s.start_window_s)[0] / s.start_window_s
        rates = dict(zip(trace.families, (float(r) for r in rates), strict=True))
    allocation = plane.solve(plane.build_problem(rates))
    plane.current = dict(allocation.assignment)
    cluster.install(split_of(allocation))


def _most_accurate_everywhere(plane: ControlPlane, trace: Trace) -> dict[str, dict[Replica, float]]:
    """The server's default plan: each family's best variant on every device it can run on
    (devices shared evenly when several families could use them)."""
    variants = list(plane.variants())
    split: dict[str, dict[Replica, float]] = {}
    for index, device in enumerate(plane.devices):
        families = sorted({v.family for v in variants if device.device_type in v.latency_s})
        families = [f for f in families if f in trace.families]
        if not families:
            continue
        family = families[index % len(families)]
        best = max(
            (v for v in variants if v.family == family and device.device_type in v.latency_s),
            key=lambda v: v.accuracy,
        )
        split.setdefault(family, {})[Replica(family, best.name, device.name)] = 1.0
    return split


def _max_slo(trace: Trace, model: ClusterModel) -> float:
    finite = trace.slo_s[np.isfinite(trace.slo_s)]
    return max([*model.slo_s.values(), float(finite.max()) if finite.size else 0.0])


def _replay(
    clock: VirtualClock,
    cluster: SimCluster,
    plane: ControlPlane,
    trace: Trace,
    model: ClusterModel,
    log: RequestLog,
    served: list[tuple[float, str]],
) -> None:
    """Schedule the arrivals one after another (the heap holds one pending arrival)."""
    families = trace.families
    arrival = trace.arrival_s.tolist()
    family_of = trace.family.tolist()
    slo = [
        model.slo_s.get(families[f], math.nan) if math.isnan(s) else s
        for f, s in zip(family_of, trace.slo_s.tolist(), strict=True)
    ]
    accuracy = model.normalized_accuracy()
    admission = cluster.admission
    n = len(arrival)

    def arrive(i: int) -> None:
        now = arrival[i]
        index = family_of[i]
        family = families[index]
        deadline = now + slo[i]
        plane.arrived(family, 1, now)

        def done(outcome: Outcome) -> None:
            late = True
            if isinstance(outcome, ItemResult):
                late = outcome.finished_s > deadline
                status = Status.LATE if late else Status.ON_TIME
                log.record(index, now, status, accuracy[outcome.variant], outcome.finished_s)
                served.append((now, outcome.variant))
            elif isinstance(outcome, DeadlineError):
                log.record(index, now, Status.DROPPED)
            else:
                log.record(index, now, Status.SHED)
            plane.answered(family, 1, late)

        try:
            candidates = admission.candidates(family, _ANY, now, deadline)
            admission.admit(family, candidates, (_PAYLOAD,), (done,), _OPTIONS, now, deadline)
        except DeadlineError:
            log.record(index, now, Status.DROPPED)
        except RequestError:
            log.record(index, now, Status.SHED)
        if i + 1 < n:
            clock.call_at(arrival[i + 1], lambda: arrive(i + 1))

    if n:
        clock.call_at(arrival[0], lambda: arrive(0))
