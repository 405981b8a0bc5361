"""Reading Proteus' profile format, on a fixture written here (the real data is optional)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rheostat.planning import DeviceSpec, FamilyDemand, MilpPlanner, Problem, load_proteus_profiles
from rheostat.planning.proteus_profiles import family_of

HEADER = "Model,Accel,Trials,batchsize,50th_pct,90th_pct,avg_latency(ms),Min,Max,Accuracy,Normalized_Accuracy"
ROWS = [
    "resnet18_v1,onnxruntime_cpu,100,1,20.0,22.0,21.0,19.0,30.0,69.7,89.5",
    "resnet18_v1,onnxruntime_cpu,100,2,50.0,55.0,51.0,48.0,60.0,69.7,89.5",
    "resnet18_v1,onnxruntime_cpu,100,2,40.0,44.0,41.0,38.0,50.0,69.7,89.5",  # repeated: last wins
    "resnet18_v1,onnxruntime_gpu_ampere,,1,2.0,,2.1,1.9,3.0,69.7,89.5",  # no Trials, no 90th
    "resnet50_v1,onnxruntime_gpu_pascal,1000,1,8.0,9.0,8.5,7.0,12.0,77.4,97.6",
    "prajjwal1/bert-tiny,onnxruntime_cpu,100,1,1.0,1.5,1.1,0.9,2.0,73.1,85.95",
    "roberta-base,onnxruntime_gpu_pascal,1000,1,10.3,11.0,10.9,8.9,495.7,94.8,97.9",
    "yolov5n,onnxruntime_cpu,100,4,30.0,31.0,30.5,29.0,40.0,28.0,55.2",
]


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    path = tmp_path / "aggregate_profiled.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return path


def test_reads_variants_with_seconds_and_device_types(csv_path: Path) -> None:
    variants = {v.name: v for v in load_proteus_profiles(csv_path)}
    assert sorted(variants) == [
        "prajjwal1/bert-tiny",
        "resnet18_v1",
        "resnet50_v1",
        "roberta-base",
        "yolov5n",
    ]
    resnet = variants["resnet18_v1"]
    assert resnet.family == "resnet"
    assert resnet.accuracy == pytest.approx(0.895)
    assert resnet.latency_s == {"cpu": {1: 0.02, 2: 0.04}, "v100": {1: 0.002}}
    assert variants["resnet50_v1"].latency_s == {"1080ti": {1: 0.008}}
    assert variants["roberta-base"].family == variants["prajjwal1/bert-tiny"].family == "bert"
    assert variants["yolov5n"].family == "yolo"


def test_an_empty_latency_in_the_chosen_column_drops_the_row(csv_path: Path) -> None:
    resnet = next(
        v for v in load_proteus_profiles(csv_path, column="90th_pct") if v.name == "resnet18_v1"
    )
    assert resnet.latency_s == {"cpu": {1: 0.022, 2: 0.044}}


def test_families_from_a_variants_folder(csv_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model_variants"
    folder.mkdir()
    (folder / "resnet").write_text("resnet18_v1,89.5\nresnet50_v1,97.6")
    (folder / "language").write_text("roberta-base,97.9\nprajjwal1/bert-tiny,85.95\n")
    variants = load_proteus_profiles(csv_path, folder)
    assert [(v.family, v.name) for v in variants] == [
        ("language", "prajjwal1/bert-tiny"),
        ("language", "roberta-base"),
        ("resnet", "resnet18_v1"),
        ("resnet", "resnet50_v1"),
    ]  # yolov5n is in no file: dropped


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("resnet152_v1", "resnet"),
        ("resnest269", "resnest"),
        ("densenet121", "densenet"),
        ("efficientnet-b7", "efficientnet"),
        ("mobilenet0.25", "mobilenet"),
        ("gpt2-xl", "gpt2"),
        ("gpt2", "gpt2"),
        ("t5-small", "t5"),
        ("albert-xxlarge-v2", "bert"),
        ("bert-large-uncased", "bert"),
        ("prajjwal1/bert-medium", "bert"),
        ("yolov5x", "yolo"),
    ],
)
def test_family_of_model_names(model: str, family: str) -> None:
    assert family_of(model) == family


def test_bad_inputs_are_named(csv_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'p99'"):
        load_proteus_profiles(csv_path, column="p99")
    bad = tmp_path / "bad.csv"
    bad.write_text("Model,Accel,batchsize,50th_pct\nx,onnxruntime_cpu,1,1.0\n")
    with pytest.raises(ValueError, match="Normalized_Accuracy"):
        load_proteus_profiles(bad)
    bad.write_text(HEADER + "\nresnet18_v1,tpu,1,1,1,1,1,1,1,1,1\n")
    with pytest.raises(ValueError, match="'tpu'"):
        load_proteus_profiles(bad)


def test_loaded_variants_can_be_planned(csv_path: Path) -> None:
    devices = (DeviceSpec("c0", "cpu"), DeviceSpec("g0", "v100"))
    demand = (FamilyDemand("resnet", 60.0, 0.1),)
    allocation = MilpPlanner().solve(Problem(devices, load_proteus_profiles(csv_path), demand))
    assert allocation.assignment["g0"] == ("resnet", "resnet18_v1")
    assert allocation.served_rps["resnet"] == pytest.approx(66.0)


PROTEUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "proteus"


@pytest.mark.skipif(
    not (PROTEUS / "profiling" / "aggregate_profiled.csv").exists(), reason="no Proteus data"
)
def test_real_profiles_have_46_variants_in_9_families() -> None:
    csv_path = PROTEUS / "profiling" / "aggregate_profiled.csv"
    by_folder = load_proteus_profiles(csv_path, PROTEUS / "traces" / "model_variants")
    assert len(by_folder) == 46
    assert len({v.family for v in by_folder}) == 9
    by_name = load_proteus_profiles(csv_path)
    assert {v.key for v in by_name} == {v.key for v in by_folder}
    assert all(set(v.latency_s) == {"cpu", "1080ti", "v100"} for v in by_folder)
