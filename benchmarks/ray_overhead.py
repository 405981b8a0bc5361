"""What distributed mode costs over local mode on the same device, side by side in one run.

Both servers are real `rheostat serve` processes with one one-core device on the same core:
  - local: `--device cpu:<core>`, the worker process pinned to that core;
  - Ray:   `--ray-address` of a Ray cluster started here (`ray.cluster_utils.Cluster`) with a
           CPU-less head node and one worker node of one CPU, its raylet (and so the
           device's actor) pinned to the same core.
The front end, Ray's head and wrk share the other cores. For each `family.variant:batch`:
throughput with 1-item requests (2 x batch in flight, batched by the server) and latency at
one request in flight, both driven by wrk; then ratios (Ray / local) and the added latency.

Usage: python benchmarks/ray_overhead.py --model-repository model_repository
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _server import start, stop
from rheostat.repository import load_repository
from serving_overhead import make_input, wrk_run


@contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """Processes started inside inherit `cores` as their CPU affinity."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def one_node_cluster(device_core: int, other_cores: set[int]) -> Iterator[str]:
    from ray.cluster_utils import Cluster

    store = 200 * 2**20
    with pinned(other_cores):
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": False,
                "object_store_memory": store,
            },
        )
    try:
        with pinned({device_core}):
            cluster.add_node(
                num_cpus=1, resources={"device_type:bench": 1}, object_store_memory=store
            )
        cluster.wait_for_nodes()
        yield str(cluster.address)
    finally:
        cluster.shutdown()


def measure(
    url: str, key: str, dims: tuple[int, ...], batch: int, seconds: float, pin: list[str]
) -> dict[str, float]:
    x_one = make_input(dims, 1)
    wrk_run(url, key, x_one, 2 * batch, 1, pin)  # warm-up
    throughput = wrk_run(url, key, x_one, 2 * batch, seconds, pin)["items"]
    wrk_run(url, key, x_one, 1, 1, pin)  # let the queue drain
    one = wrk_run(url, key, x_one, 1, seconds, pin)
    return {"items": throughput, "p50": one["p50"] * 1e3, "p99": one["p99"] * 1e3}


def benchmarked(
    repository: Path, variants: str
) -> tuple[list[tuple[str, tuple[int, ...], int]], Path]:
    """(variant, input dims, batch) per benchmarked variant, and a repository holding just
    their families (fewer variants to load and profile)."""
    repo = load_repository(repository)
    specs = []
    families = set()
    for item in variants.split(","):
        key, _, batch = item.partition(":")
        family, _, variant = key.partition(".")
        if family not in repo.families:
            print(f"skipping {key}: family {family} is not in {repository}")
            continue
        families.add(family)
        specs.append((key, repo.families[family].config.variants[variant].input.dims, int(batch)))
    subset = Path(os.environ.get("TMPDIR", "/tmp")) / f"rheostat-ray-bench-{os.getpid()}"
    subset.mkdir(parents=True, exist_ok=True)
    for family in families:
        link = subset / family
        if not link.exists():
            link.symlink_to(repository.resolve() / family)
    return specs, subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--variants", default="digits.cnn_large:16,efficientnet_lite.lite0:4")
    parser.add_argument("--rounds", type=int, default=3, help="alternating local/Ray rounds")
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        sys.exit("Ray is needed: pip install 'rheostat[ray]' (make venv installs it)")
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed to load the servers: apt-get install wrk (make bench does this)")
    everything = os.sched_getaffinity(0)
    core = max(everything)
    others = everything - {core} or everything
    pin = ["taskset", "-c", ",".join(map(str, sorted(others)))]

    specs, subset = benchmarked(args.model_repository, args.variants)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}

    def run(mode: str, *server_args: str) -> None:
        server = start(subset, *server_args, "--no-metrics")
        try:
            for key, dims, batch in specs:
                results.setdefault((key, mode), []).append(
                    measure(server.url, key, dims, batch, args.seconds, pin)
                )
        finally:
            stop(server)

    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}: local", flush=True)
        run("local", "--device", f"cpu:{core}")
        print(f"round {round_ + 1}/{args.rounds}: Ray", flush=True)
        with one_node_cluster(core, others) as address:
            run("ray", "--ray-address", address)
    shutil.rmtree(subset, ignore_errors=True)

    def median(key: str, mode: str, field: str) -> float:
        values = sorted(r[field] for r in results[(key, mode)])
        return values[len(values) // 2]

    print(
        f"\nmachine: {os.cpu_count()} cores; the device is core {core} in both modes; front end, "
        f"Ray head and wrk on cores {sorted(others)}; medians of {args.rounds} alternating rounds, {args.seconds:.0f} s each\n"
    )
    print("| variant | in flight | local items/s | Ray items/s | Ray / local |")
    print("|---|---:|---:|---:|---:|")
    for key, _, batch in specs:
        local, ray_ = median(key, "local", "items"), median(key, "ray", "items")
        print(f"| {key} | {2 * batch} | {local:.0f} | {ray_:.0f} | {ray_ / local:.3f} |")
    print(
        "\n| variant (1 in flight) | local p50 ms | Ray p50 ms | added p50 ms | local p99 ms | Ray p99 ms | added p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, _, _ in specs:
        l50, r50 = median(key, "local", "p50"), median(key, "ray", "p50")
        l99, r99 = median(key, "local", "p99"), median(key, "ray", "p99")
        print(
            f"| {key} | {l50:.2f} | {r50:.2f} | {r50 - l50:+.2f} | {l99:.2f} | {r99:.2f} | {r99 - l99:+.2f} |"
        )


if __name__ == "__main__":
    main()
