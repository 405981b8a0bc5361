"""rheostat against the serving policies Proteus (ASPLOS'24) compares, on Proteus' own setup.

Every policy runs in rheostat's simulator (`rheostat.sim`: the server's router, admission,
device runners, batch policies, controller and planner on a virtual clock, latencies drawn
from Proteus' published profiles: median from `50th_pct`, log-normal tail fitted to
`90th_pct`, seeded) on Proteus' 40-device cluster (20 CPU, the paper's 10 "VPUs" counted as
CPUs, 10 GTX 1080 Ti, 10 V100) and the Twitter-derived traces `zipf_exponential/300` and
`zipf_exponential_bursty/300` (SLO 300 ms). Model loads take `--load-time` seconds and each
plan takes effect after the planner's measured solve time. One table per trace, with the
offline oracle bound (a fluid LP over 1-s windows with perfect knowledge of the trace) as
its last row; metrics as Proteus defines them. Then the targets of issue 4: rheostat's
SLO-violation ratio at most half the Proteus-style policy's, max accuracy drop no worse,
throughput no lower; and one policy over `zipf_exponential/300` in at most 15 s.

For reference, Proteus' published simulator on `zipf_exponential/300` (its README, 2-core
machine): Clipper-HA SLO ratio 0.282 at 186 QPS; Clipper-HT 0.113, max drop 21.4 %; INFaaS
0.088, 7.1 %; Proteus (HiGHS) 0.060, 5.6 %, 244 QPS; 313 s per run.

Proteus' data is licensed for comparison only and is not in this repository: it is read from
`../shared/data/proteus` (or `--proteus`); without it the benchmark says so and exits.

Usage: python benchmarks/proteus_compare.py [--traces zipf_exponential] [--policies ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rheostat.sim.compare import compare
from rheostat.sim.model import proteus_cluster
from rheostat.sim.policies import POLICIES, PolicyName, policy
from rheostat.sim.simulation import RunResult, SimSettings
from rheostat.sim.traces import read_proteus

ROOT = Path(__file__).resolve().parents[1]
PROTEUS = ROOT.parent / "shared" / "data" / "proteus"
TRACES = ("zipf_exponential", "zipf_exponential_bursty")
SPEED_TARGET_S = 15.0


def main() -> int:
    args = _arguments()
    if not (args.proteus / "profiling" / "aggregate_profiled.csv").is_file():
        print(
            f"Proteus data not found at {args.proteus}: this benchmark needs "
            "../shared/data/proteus (licensed for comparison only, not shipped). Skipping."
        )
        return 2
    model = proteus_cluster(args.proteus)
    specs = [policy(p) for p in args.policies]
    settings = SimSettings(load_time_s=args.load_time, seed=args.seed)
    for name in args.traces:
        trace = read_proteus(args.proteus / "traces" / "twitter" / "asplos" / name / "300")
        print(f"\n## {name}/300: {len(trace):,} requests over {trace.duration_s:.0f} s, "
              f"{len(trace.families)} families, {len(model.devices)} devices")  # fmt: skip
        result = compare(model, trace, specs, settings, progress=_progress)
        print()
        print(result.table())
        if result.oracle is not None:
            print(f"\n(oracle LP solved in {result.oracle.solve_time_s:.2f} s)")
        _targets(result.runs, speed=name == TRACES[0])
        written = result.write(args.output / name, f"{name}/300, 40 devices, SLO 300 ms")
        print(f"wrote {written[2]} and {len(written) - 1} tables to {args.output / name}")
    return 0


def _progress(run: RunResult) -> None:
    rate = len(run.requests) / run.wall_s
    print(f"  {run.policy:11s} simulated in {run.wall_s:5.1f} s ({rate:,.0f} requests/s), "
          f"{len(run.plans)} plans, {run.num_loads} model loads", flush=True)  # fmt: skip


def _targets(runs: dict[str, RunResult], speed: bool) -> None:
    ours, theirs = runs.get(PolicyName.RHEOSTAT), runs.get(PolicyName.PROTEUS)
    if ours is None or theirs is None:
        return
    a, b = ours.summary, theirs.summary
    ratio = a.slo_violation_ratio / b.slo_violation_ratio if b.slo_violation_ratio else 0.0
    checks = [
        (f"SLO-violation ratio / Proteus-style: {ratio:.2f} (target <= 0.5)", ratio <= 0.5),
        (f"max accuracy drop {a.max_accuracy_drop_pct:.2f} vs {b.max_accuracy_drop_pct:.2f} % "
         "(target: no worse)", a.max_accuracy_drop_pct <= b.max_accuracy_drop_pct + 1e-9),
        (f"throughput {a.throughput_qps:.1f} vs {b.throughput_qps:.1f} QPS (target: no lower)",
         a.throughput_qps >= b.throughput_qps),
    ]  # fmt: skip
    if speed:
        slowest = max(r.wall_s for r in runs.values())
        checks.append((f"slowest policy simulated in {slowest:.1f} s (target <= "
                       f"{SPEED_TARGET_S:.0f} s)", slowest <= SPEED_TARGET_S))  # fmt: skip
    for text, met in checks:
        print(f"  {'met ' if met else 'MISS'}  {text}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proteus", type=Path, default=PROTEUS)
    parser.add_argument("--traces", nargs="+", default=list(TRACES))
    parser.add_argument("--policies", nargs="+", default=[p.value for p in POLICIES])
    parser.add_argument("--load-time", type=float, default=1.0, help="model load time, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
