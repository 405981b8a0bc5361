"""The simulated data plane: plan changes cost a model load and drop nothing."""

from __future__ import annotations

import numpy as np

from rheostat.admission import RequestOptions
from rheostat.clock import VirtualClock
from rheostat.devices.work import ItemResult, Outcome, Payload, PayloadKind
from rheostat.plan import Replica
from rheostat.planning import DeviceSpec, VariantSpec
from rheostat.routing import Constraints
from rheostat.sim.cluster import ClusterSettings, SimCluster

DEVICES = (DeviceSpec("d0", "gpu"), DeviceSpec("d1", "gpu"))
VARIANTS = (
    VariantSpec("f", "big", 0.9, {"gpu": {1: 0.010, 4: 0.020}}),
    VariantSpec("f", "small", 0.7, {"gpu": {1: 0.002, 4: 0.004}}),
)
BIG0, SMALL0, BIG1 = (
    Replica("f", "big", "d0"),
    Replica("f", "small", "d0"),
    Replica("f", "big", "d1"),
)


def cluster(clock: VirtualClock, load_time_s: float = 1.0) -> SimCluster:
    return SimCluster(clock, DEVICES, VARIANTS, settings=ClusterSettings(load_time_s=load_time_s))


def send(sim: SimCluster, clock: VirtualClock, outcomes: list[Outcome], slo_s: float = 0.5) -> None:
    now = clock.now()
    candidates = sim.admission.candidates("f", Constraints(), now, now + slo_s)
    payload = Payload(PayloadKind.TENSOR, np.zeros(1, np.float32))
    sim.admission.admit(
        "f", candidates, (payload,), (outcomes.append,), RequestOptions(), now, now + slo_s
    )


def test_install_loads_at_once_and_routes_by_the_split() -> None:
    clock = VirtualClock()
    sim = cluster(clock)
    sim.install({"f": {BIG0: 3.0, BIG1: 1.0}})
    assert sim.assignment() == {"d0": ("f", "big"), "d1": ("f", "big")}
    outcomes: list[Outcome] = []
    for i in range(8):
        clock.call_at(i * 0.1, lambda: send(sim, clock, outcomes))
    clock.run()
    devices = [o.device for o in outcomes if isinstance(o, ItemResult)]
    assert len(devices) == 8 and devices.count("d0") == 6 and devices.count("d1") == 2


def test_a_changed_device_serves_its_old_variant_until_the_new_one_is_loaded() -> None:
    clock = VirtualClock()
    sim = cluster(clock, load_time_s=1.0)
    sim.install({"f": {BIG0: 1.0}})
    outcomes: list[Outcome] = []
    for i in range(30):
        clock.call_at(i * 0.1, lambda: send(sim, clock, outcomes))
    clock.call_at(0.95, lambda: sim.apply_split({"f": {SMALL0: 1.0}}))
    clock.run()
    served = [
        (round(o.finished_s - o.compute_s, 2), o.variant)
        for o in outcomes
        if isinstance(o, ItemResult)
    ]
    assert len(served) == 30  # nothing dropped by the re-plan
    assert {v for t, v in served if t < 1.95} == {"f.big"}
    assert {v for t, v in served if t >= 1.95} == {"f.small"}
    assert sim.num_loads == 2 and "f.big" not in sim.runners["d0"].replicas  # drained


def test_a_plan_replaced_while_loading_cancels_the_load() -> None:
    clock = VirtualClock()
    sim = cluster(clock, load_time_s=1.0)
    sim.install({"f": {BIG0: 1.0}})
    clock.call_at(0.1, lambda: sim.apply_split({"f": {SMALL0: 1.0}}))
    clock.call_at(0.5, lambda: sim.apply_split({"f": {BIG0: 1.0}}))
    clock.run_until(3.0)
    assert sim.assignment()["d0"] == ("f", "big") and sim.num_loads == 1
