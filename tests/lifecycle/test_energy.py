"""Power models, RAPL counters (read from a powercap tree laid out as Linux does), and energy
budgets in the router and the planner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.power import PowerModel, RaplMeter, default_power, parse_power
from rheostat.plan import Plan, Replica
from rheostat.planning import DeviceSpec, FamilyDemand, Problem, VariantSpec
from rheostat.routing import Constraints, Router


def test_a_request_is_charged_its_share_of_the_batch_at_active_power() -> None:
    model = PowerModel(2.0, 10.0, "config")
    assert model.item_energy_j(0.004, 4) == pytest.approx(0.01)
    cpu = default_power(Device("c", DeviceKind.CPU, (0, 1)))
    assert cpu.source == "estimate" and cpu.active_w == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [("cpu1", "TYPE=IDLE:ACTIVE"), ("cpu1=5", "TYPE=IDLE:ACTIVE"), ("=1:2", "TYPE=IDLE"),
     ("cpu1=9:3", "idle 9.0 W and active 3.0 W"), ("cpu1=a:b", "TYPE=IDLE:ACTIVE")],
)  # fmt: skip
def test_bad_power_flags_name_the_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_power(text)
    assert repr(text) in str(info.value)


def _zone(root: Path, name: str, energy: int, wrap: int) -> None:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_sums_packages_and_survives_a_counter_wrap(tmp_path: Path) -> None:
    _zone(tmp_path, "intel-rapl:0", 999_000_000, 1_000_000_000)
    _zone(tmp_path, "intel-rapl:1", 5_000_000, 1_000_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 1, 10)  # a package's core sub-zone: not counted twice
    meter = RaplMeter(tmp_path)
    assert meter.readable and len(meter.zones) == 2
    before = meter.read_uj()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("2000000\n")  # wrapped past 1e9
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("8000000\n")
    after = meter.read_uj()
    assert before is not None and after is not None
    assert meter.joules_between(before, after) == pytest.approx(3.0 + 3.0)


def test_no_powercap_means_no_meter(tmp_path: Path) -> None:
    assert not RaplMeter(tmp_path / "missing").readable
    (tmp_path / "intel-rapl:0").mkdir()  # unreadable: no energy_uj
    assert RaplMeter(tmp_path).read_uj() is None


def test_the_router_keeps_to_an_energy_budget() -> None:
    cheap, costly = Replica("f", "cheap", "d0"), Replica("f", "costly", "d0")
    plan = Plan(frozenset({cheap, costly}), {"f": {costly: 1.0}})
    router = Router(plan, {"f.cheap": 0.8, "f.costly": 0.9}, energy={cheap: 0.01, costly: 0.1})
    assert router.candidates("f")[0] == costly
    assert router.candidates("f", Constraints(max_energy_j=0.05)) == [cheap]
    assert router.candidates("f", Constraints(max_energy_j=0.001)) == []


def test_the_planner_leaves_out_variants_over_a_familys_budget() -> None:
    variants = (
        VariantSpec("f", "big", 0.95, {"cpu": {1: 0.010, 8: 0.040}}),
        VariantSpec("f", "small", 0.85, {"cpu": {1: 0.001, 8: 0.004}}),
    )
    device = (DeviceSpec("d0", "cpu", active_w=10.0),)
    free = Problem(device, variants, (FamilyDemand("f", 10.0, 0.1),))
    assert [o.variant for o in free.options("cpu")] == ["big", "small"]
    bounded = Problem(device, variants, (FamilyDemand("f", 10.0, 0.1, max_energy_j=0.05),))
    assert [o.variant for o in bounded.options("cpu")] == ["small"]  # big: 0.1 J alone
    unknown = Problem((DeviceSpec("d0", "cpu"),), variants,
                      (FamilyDemand("f", 10.0, 0.1, max_energy_j=0.05),))  # fmt: skip
    assert len(unknown.options("cpu")) == 2  # no power model: nothing to judge by
    with pytest.raises(ValueError, match="max_energy_j 0"):
        FamilyDemand("f", 1.0, 0.1, max_energy_j=0)
    assert FamilyDemand("f", 1.0, 0.1).max_energy_j == math.inf
