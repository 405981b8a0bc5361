"""Router and plan: weighted split, constraints and fall-backs, as pure decisions."""

from collections import Counter
from pathlib import Path

import pytest

from conftest import build_toy_repository
from rheostat.devices import Device, DeviceKind
from rheostat.plan import Plan, Replica, default_plan
from rheostat.repository import load_repository
from rheostat.routing import Constraints, Router

A0, A1, B0 = Replica("f", "a", "d0"), Replica("f", "a", "d1"), Replica("f", "b", "d0")
ACCURACY = {"f.a": 0.9, "f.b": 0.7}


def test_smooth_weighted_round_robin_matches_the_split_exactly() -> None:
    plan = Plan(frozenset({A0, A1, B0}), {"f": {A0: 3.0, A1: 1.0}})
    router = Router(plan, ACCURACY)
    picks = [router.candidates("f")[0] for _ in range(8)]
    assert Counter(picks) == {A0: 6, A1: 2}
    assert picks[:4] == [A0, A1, A0, A0]  # smooth: no long runs (ties go to the larger key)


def test_pinned_variant_outside_the_split_is_served() -> None:
    router = Router(Plan(frozenset({A0, A1, B0}), {"f": {A0: 1.0}}), ACCURACY)
    assert router.candidates("f", Constraints(variant="b")) == [B0]


def test_min_accuracy_and_excluded_devices() -> None:
    router = Router(Plan(frozenset({A0, A1, B0}), {"f": {B0: 1.0}}), ACCURACY)
    assert router.candidates("f") == [B0]
    assert router.candidates("f", Constraints(min_accuracy=0.8)) == [A0, A1]
    no_d0 = Constraints(exclude_devices=frozenset({"d0"}))
    assert router.candidates("f", no_d0) == [A1]


def test_plan_rejects_split_over_unknown_replicas() -> None:
    with pytest.raises(ValueError, match="names replicas not in the plan"):
        Plan(frozenset({A0}), {"f": {A1: 1.0}})
    with pytest.raises(ValueError, match="some positive"):
        Plan(frozenset({A0}), {"f": {A0: 0.0}})


def test_default_plan_loads_everything_and_splits_to_the_best(tmp_path: Path) -> None:
    repo = load_repository(build_toy_repository(tmp_path))
    devices = [Device("c0", DeviceKind.CPU, (0,)), Device("c1", DeviceKind.CPU, (1,))]
    plan = default_plan(repo, devices)
    assert len(plan.replicas) == 4
    assert plan.split["toy"] == {
        Replica("toy", "slow", "c0"): 1.0,
        Replica("toy", "slow", "c1"): 1.0,
    }
    gpu_only = default_plan(repo, [Device("g0", DeviceKind.GPU, gpu_index=0)])
    assert gpu_only.replicas == frozenset()  # toy's instance_group is KIND_CPU


def test_degrade_ladder_follows_the_split() -> None:
    c0 = Replica("f", "c", "d0")
    router = Router(Plan(frozenset({A0, A1, B0, c0}), {"f": {A0: 1.0}}), {**ACCURACY, "f.c": 0.8})
    # planned a@d0, then a elsewhere, then cheaper variants by accuracy: c (0.8), b (0.7)
    assert router.candidates("f") == [A0, A1, c0, B0]
    assert router.candidates("f", Constraints(min_accuracy=0.75)) == [A0, A1, c0]


def test_a_preferred_variant_goes_first_least_loaded_then_only_cheaper_ones() -> None:
    a0, a1, b0 = Replica("f", "a", "d0"), Replica("f", "a", "d1"), Replica("f", "b", "d0")
    c0 = Replica("f", "c", "d0")
    load = {a0: 5.0, a1: 1.0, b0: 0.0, c0: 0.0}
    router = Router(
        Plan(frozenset(load), {"f": {c0: 1.0}}), {"f.a": 0.8, "f.b": 0.6, "f.c": 0.9},
        balance=load.__getitem__,
    )  # fmt: skip
    assert router.candidates("f", Constraints(prefer="a")) == [a1, a0, b0]  # never c
    # an unknown preference changes nothing: the split first
    assert router.candidates("f", Constraints(prefer="gone"))[0] == c0
