"""Whole simulations on small synthetic clusters: every request answered, reproducible,
adaptive policies scale accuracy with load, and the oracle bounds what policies reach."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rheostat.planning import DeviceSpec, VariantSpec
from rheostat.sim.compare import ORACLE_ROW, compare
from rheostat.sim.metrics import Status
from rheostat.sim.model import ClusterModel
from rheostat.sim.policies import POLICIES, PolicyName, policy
from rheostat.sim.simulation import SimSettings, simulate
from rheostat.sim.traces import gamma_bursts, merge, step

GPU = {"big": {1: 0.006, 4: 0.012, 8: 0.020}, "small": {1: 0.0015, 4: 0.003, 8: 0.005}}
CPU = {"big": {1: 0.045, 4: 0.160}, "small": {1: 0.008, 4: 0.026}}


def model() -> ClusterModel:
    devices = (*(DeviceSpec(f"gpu-{i}", "gpu") for i in range(2)), DeviceSpec("cpu-0", "cpu"))
    median, tail = [], []
    for name, accuracy in (("big", 0.8), ("small", 0.7)):
        points = {"gpu": GPU[name], "cpu": CPU[name]}
        median.append(VariantSpec("vision", name, accuracy, points))
        scaled = {t: {b: s * 1.2 for b, s in p.items()} for t, p in points.items()}
        tail.append(VariantSpec("vision", name, accuracy, scaled))
    return ClusterModel(devices, tuple(median), tuple(tail), 0.99, {"vision": 0.1})


def step_trace():  # type: ignore[no-untyped-def]
    # 300 rps fits the big variant on both GPUs; 1200 rps needs the small one
    return step("vision", [(0.0, 300.0), (10.0, 1200.0), (20.0, 300.0)], 30.0, seed=1)


def test_every_request_gets_exactly_one_answer_and_runs_repeat_exactly() -> None:
    trace = step_trace()
    fixed = SimSettings(solve_time_s=0.05)  # measured solve times differ from run to run
    first = simulate(model(), trace, policy("rheostat"), fixed)
    again = simulate(model(), trace, policy("rheostat"), fixed)
    assert len(first.requests) == len(trace)
    np.testing.assert_array_equal(np.sort(first.requests.arrival_s), trace.arrival_s)
    assert first.summary == again.summary
    other_seed = simulate(
        model(), trace, policy("rheostat"), SimSettings(seed=7, solve_time_s=0.05)
    )
    assert other_seed.summary != first.summary  # latencies are drawn from the seed


def test_adaptive_plans_move_to_the_cheap_variant_under_load_and_back() -> None:
    run = simulate(model(), step_trace(), policy("rheostat"))
    gpu_variants = [
        (t, {a[d][1] for d in ("gpu-0", "gpu-1") if a.get(d)}) for t, a in run.assignments
    ]
    assert gpu_variants[0][1] == {"big"}
    assert any("small" in v for t, v in gpu_variants if 10 < t < 20)
    assert gpu_variants[-1][1] == {"big"}
    # the planner's measured solve time passed on the virtual clock before each plan applied
    assert all(e.applied_s is not None and e.applied_s >= e.time_s for e in run.plans)
    periodic = simulate(model(), step_trace(), policy("proteus"))  # re-plans every 10 s
    assert run.summary.slo_violation_ratio < periodic.summary.slo_violation_ratio / 4


def test_scaling_accuracy_beats_both_static_extremes() -> None:
    trace = step_trace()
    runs = {
        n: simulate(model(), trace, policy(n)) for n in ("clipper_ht", "clipper_ha", "rheostat")
    }
    ht, ha, ours = (runs[n].summary for n in ("clipper_ht", "clipper_ha", "rheostat"))
    assert ours.effective_accuracy_pct > ht.effective_accuracy_pct + 5
    assert ours.slo_violation_ratio < ha.slo_violation_ratio / 4


def test_model_load_time_is_paid_on_every_change() -> None:
    trace = step_trace()
    quick = simulate(model(), trace, policy("rheostat"), SimSettings(load_time_s=0.0))
    slow = simulate(model(), trace, policy("rheostat"), SimSettings(load_time_s=5.0))
    assert slow.summary.slo_violation_ratio > quick.summary.slo_violation_ratio


def test_oracle_bounds_every_policy() -> None:
    trace = merge(step_trace(), gamma_bursts("vision", 50.0, 30.0, cv=2.0, seed=3))
    result = compare(model(), trace, [POLICIES[n] for n in PolicyName])
    assert result.oracle is not None
    for run in result.runs.values():
        assert run.summary.slo_violation_ratio >= result.oracle.slo_violation_ratio - 1e-9
    assert list(result.rows())[-1] == ORACLE_ROW
    assert result.table().splitlines()[-1].startswith(f"| {ORACLE_ROW} |")


def test_statuses_cover_every_outcome_under_overload() -> None:
    trace = step("vision", [(0.0, 4000.0)], 5.0, seed=2)  # far beyond the cluster
    run = simulate(model(), trace, dataclasses.replace(policy("proteus"), name="overloaded"))
    counts = np.bincount(run.requests.status, minlength=4)
    assert counts[Status.ON_TIME] > 0 and counts[Status.SHED] + counts[Status.DROPPED] > 0
    assert run.summary.num_requests == len(trace)


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match="unknown policy 'fastest'; choose one of: clipper_ht"):
        policy("fastest")
