"""What the server costs over raw ONNX Runtime, measured side by side in one run.

For each `family.variant:batch`:
  1. raw ONNX Runtime: one session with the worker's options (threads = the device's cores),
     throughput at `batch`, and latency at batch 1;
  2. the server (a real `rheostat serve` process, one device with the same cores), pinned to
     the same variant over HTTP with binary tensors: throughput with requests of `batch`
     items (2 in flight, so the device never idles), throughput with 1-item requests
     (2 x batch in flight, batched by the server), and latency at one request in flight,
     all driven by wrk (a C load generator; a Python client saturates first on 2 cores);
  3. memory (RSS and PSS) of the server and all its worker processes, whole repository loaded.

Both sides use the same device (`--device`, default core 1 of 2): raw ONNX Runtime is pinned
to its cores, and so is the server's worker, while the front end and wrk run on the other
cores, as a deployment would give the HTTP front end its own core.

Usage: python benchmarks/serving_overhead.py --model-repository model_repository
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from _server import RunningServer, start, stop
from rheostat.api.codec import encode_infer_request
from rheostat.devices import parse_device
from rheostat.repository import load_repository


def session_for(path: Path, cores: set[int]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = len(cores)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def make_input(dims: tuple[int, ...], batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(batch, *dims)).astype(np.float32)


def raw_throughput(session: ort.InferenceSession, x: np.ndarray, seconds: float) -> float:
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: x})
    count, start_s = 0, time.perf_counter()
    while time.perf_counter() - start_s < seconds:
        session.run(None, {name: x})
        count += len(x)
    return count / (time.perf_counter() - start_s)


def raw_latency(session: ort.InferenceSession, x: np.ndarray, n: int) -> list[float]:
    name = session.get_inputs()[0].name
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return times


def wrk_run(
    url: str, model: str, x: np.ndarray, connections: int, seconds: float, pin: list[str]
) -> dict[str, float]:
    """Drive the server with wrk (C, keep-alive): requests/s, items/s, p50/p99 latency in s."""
    content, headers = encode_infer_request(
        [("input", x)], binary=True, binary_data_output=True, parameters={"slo_ms": 10_000}
    )
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.bin"
        body.write_bytes(content)
        script = Path(tmp) / "post.lua"
        lines = [
            "wrk.method = 'POST'",
            f"local f = io.open('{body}', 'rb')",
            "wrk.body = f:read('*a')",
            "f:close()",
        ]
        lines += [f"wrk.headers['{k}'] = '{v}'" for k, v in headers.items()]
        script.write_text("\n".join(lines) + "\n")
        command = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
                   f"{url}/v2/models/{model}/infer"]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-200 answers during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"\s(50|99)%\s+([\d.]+\w+)", out))
    return {
        "rps": rps,
        "items": rps * len(x),
        "p50": _seconds(latency["50"]),
        "p99": _seconds(latency["99"]),
    }


def _seconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument(
        "--variants",
        default="digits.cnn_large:32,efficientnet_lite.lite0:8,efficientnet_lite.lite2:8",
    )
    parser.add_argument(
        "--device",
        default="cpu:1" if len(os.sched_getaffinity(0)) > 1 else "cpu:0",
        help="the device both sides run on; the other cores host the front end and wrk",
    )
    args = parser.parse_args()
    device = parse_device(args.device)
    cores = set(device.cores)
    others = sorted(set(os.sched_getaffinity(0)) - cores)
    pin = ["taskset", "-c", ",".join(map(str, others))] if others else []
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed to load the server: apt-get install wrk (make bench does this)")
    repo = load_repository(args.model_repository)
    specs = []
    for item in args.variants.split(","):
        key, _, batch = item.partition(":")
        family, _, variant = key.partition(".")
        if family not in repo.families:
            print(f"skipping {key}: family {family} is not in {args.model_repository}")
            continue
        fam = repo.families[family]
        specs.append(
            (key, fam.model_path(variant), fam.config.variants[variant].input.dims, int(batch))
        )

    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)  # raw ONNX Runtime on exactly the device's cores
    raw = {}
    for key, path, dims, batch in specs:
        session = session_for(path, cores)
        raw[key] = (
            raw_throughput(session, make_input(dims, batch), args.seconds),
            raw_latency(session, make_input(dims, 1), args.latency_samples),
        )
        del session
    os.sched_setaffinity(0, everything)

    server: RunningServer = start(args.model_repository, "--device", args.device)
    try:
        rss, pss = server.memory_mib()
        rows = []
        for key, _, dims, batch in specs:
            x_batch, x_one = make_input(dims, batch), make_input(dims, 1)
            wrk_run(server.url, key, x_batch, 2, 1, pin)  # warm-up
            big = wrk_run(server.url, key, x_batch, 2, args.seconds, pin)["items"]
            single = wrk_run(server.url, key, x_one, 2 * batch, args.seconds, pin)["items"]
            # the throughput runs end with requests still queued: drain them first
            wrk_run(server.url, key, x_one, 1, 1, pin)
            one = wrk_run(server.url, key, x_one, 1, args.seconds, pin)
            rows.append((key, batch, raw[key], big, single, one))
    finally:
        stop(server)

    print(f"\nmachine: {os.cpu_count()} cores; device {args.device} (ONNX Runtime threads: "
          f"{len(cores)}); front end and wrk on cores {others or 'shared'}\n")  # fmt: skip
    print("| variant | batch | raw ORT items/s | server items/s (batch reqs) | ratio | "
          "server items/s (1-item reqs) | ratio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for key, batch, (raw_tp, _), big, single, _ in rows:
        print(f"| {key} | {batch} | {raw_tp:.0f} | {big:.0f} | {big / raw_tp:.3f} | "
              f"{single:.0f} | {single / raw_tp:.3f} |")  # fmt: skip
    print("\n| variant | raw p50 ms | raw p99 ms | server p50 ms | server p99 ms | "
          "added p50 ms | added p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for key, _, (_, raw_lat), _, _, one in rows:
        r50, r99, s50, s99 = pct(raw_lat, 50), pct(raw_lat, 99), one["p50"] * 1e3, one["p99"] * 1e3
        print(f"| {key} | {r50:.3f} | {r99:.3f} | {s50:.3f} | {s99:.3f} | "
              f"{s50 - r50:.3f} | {s99 - r99:.3f} |")  # fmt: skip
    print(f"\nmemory of all server processes, repository loaded: RSS {rss:.0f} MiB, "
          f"PSS {pss:.0f} MiB (target <= 1024 MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
