"""End-to-end SLOs over LTE uplinks, simulated: 64 cameras on 16 devices, in virtual time.

The same comparison as `network_slo.py` (rheostat's collective mapping against a static
choice for everyone, client-only and server-only adaptation), at a scale this machine cannot
host live. The simulator (`rheostat.sim.network`) drives the server's own admission, device
runners, batch policies, client registry and mapping on a virtual clock.

Inputs, measured here, side by side in one run:
* each `efficientnet_lite` image variant's batch latency on one core of this machine (ONNX
  Runtime, one thread; medians of `--repeats` interleaved runs): 16 devices are 16 such cores;
* JPEG bytes per square pixel of each bundled sample photo at quality 85 (clients cycle
  through them);
* uplinks: the LTE uplink trace of Jellyfish's artifact (`../shared/data/jellyfish`), each
  client from its own offset; without `../shared` a seeded synthetic LTE trace per client,
  and the report says so.

    .venv/bin/python benchmarks/network_sim.py --model-repository model_repository
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import numpy as np

from rheostat.client import encode_frame
from rheostat.clock import Stopwatch
from rheostat.lifecycle.images import preprocess_image, sample_images
from rheostat.lifecycle.quantize import ort_session
from rheostat.network.camera import CameraMode
from rheostat.network.traces import BandwidthTrace, read_trace, synthetic_trace
from rheostat.repository import load_family
from rheostat.sim.network import SimClient, SimVariant, simulate_clients

ROOT = Path(__file__).resolve().parents[1]
LTE = Path("vuhpdc-jellyfish/network_shaping/lte_upload_trace.txt")
BATCHES = (1, 2, 4, 8)


def profile_variants(repo: Path, repeats: int) -> list[SimVariant]:
    """Image variants of efficientnet_lite with their one-core batch latencies (medians)."""
    family = load_family(repo / "efficientnet_lite")
    photo = next(iter(sample_images().values()))
    sessions, inputs, meta = {}, {}, {}
    for name, v in family.config.variants.items():
        if v.preprocessing is None:
            continue
        version = family.served_version(name)
        sessions[name] = ort_session(family.path / name / str(version) / "model.onnx", threads=1)
        inputs[name] = preprocess_image(photo, v.preprocessing)[None]
        meta[name] = (v.accuracy, v.preprocessing.resize_shorter_px, v.jpeg_accuracy)
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for batch in BATCHES:
            for name, session in sessions.items():
                x = np.repeat(inputs[name], batch, axis=0)
                feed = {session.get_inputs()[0].name: x}
                session.run(None, feed)  # warm
                with Stopwatch() as watch:
                    session.run(None, feed)
                times.setdefault((name, batch), []).append(watch.elapsed_s)
    return [
        SimVariant(name, acc, size, {b: statistics.median(times[(name, b)]) for b in BATCHES}, jpeg)
        for name, (acc, size, jpeg) in meta.items()
    ]


def jpeg_density() -> list[float]:
    """Bytes per square pixel (of the shorter side) of each sample photo at 256 px, q85."""
    out = []
    for photo in sample_images().values():
        data, shorter = encode_frame(photo, 256)
        out.append(len(data) / shorter**2)
    return out


def traces(traces_dir: Path, clients: int) -> tuple[list[tuple[BandwidthTrace, float]], str]:
    path = traces_dir / LTE
    if path.is_file():
        trace = read_trace(path)
        step = trace.duration_s / clients
        return [(trace, i * step) for i in range(clients)], f"{path.name}: {trace.describe()}"
    synthetic = [(synthetic_trace(seconds=200, seed=i), 0.0) for i in range(clients)]
    return synthetic, (
        f"NOTE: {path} is missing (no ../shared here): seeded synthetic LTE traces instead "
        f"({synthetic[0][0].describe()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--traces-dir", type=Path, default=ROOT.parent / "shared/data/jellyfish")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--slo-ms", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/network_sim.txt")
    args = parser.parse_args()

    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    variants = profile_variants(args.model_repository, args.repeats)
    density = jpeg_density()
    links, described = traces(args.traces_dir, args.clients)
    clients = [
        SimClient(f"c{i}", trace, offset, args.fps, args.slo_ms / 1e3, density[i % len(density)])
        for i, (trace, offset) in enumerate(links)
    ]
    say(
        f"# {args.clients} cameras at {args.fps:g} fps, {args.devices} devices (one core of "
        f"this machine each), SLO {args.slo_ms:g} ms end to end, {args.seconds:g} s simulated"
    )
    say(f"uplinks: {described}")
    say(
        "JPEG q85 bytes per square pixel of the sample photos: "
        + ", ".join(f"{d:.3f}" for d in density)
    )
    say()
    say(
        "| variant | accuracy (agreement) | at JPEG 85 / 50 / 30 | input px | ms b=1 | ms b=2 "
        "| ms b=8 |"
    )
    say("|---|---:|---:|---:|---:|---:|---:|")
    for v in sorted(variants, key=lambda v: v.accuracy):
        lat = v.latency_s
        jpeg = " / ".join(f"{v.jpeg_accuracy[q]:.3f}" for q in (85, 50, 30) if q in v.jpeg_accuracy)
        say(
            f"| {v.name} | {v.accuracy:.3f} | {jpeg or '-'} | {v.input_size} | "
            f"{lat[1] * 1e3:.1f} | {lat[2] * 1e3:.1f} | {lat[8] * 1e3:.1f} |"
        )
    say()
    say(
        "Every mode's frames are JPEG (85 unless rheostat says otherwise), so accuracies are "
        "each variant's at the quality its frames were sent at."
    )
    say()
    say("| mode | on time | dropped | p50 ms | p99 ms | accuracy | utilization | sim s |")
    say("|---|---:|---:|---:|---:|---:|---:|---:|")
    runs = [
        ("rheostat (adaptive)", CameraMode.ADAPTIVE, None),
        ("rheostat, input size only", CameraMode.ADAPTIVE, "sizes"),
        ("client-only", CameraMode.CLIENT, None),
        ("server-only", CameraMode.SERVER, None),
    ]
    runs += [
        (f"static {v.name}", CameraMode.STATIC, v.name)
        for v in sorted(variants, key=lambda v: v.accuracy)
    ]
    results = {}
    # without the JPEG-quality knob: every frame at quality 85, as the other modes send
    sizes_only = [
        dataclasses.replace(v, jpeg_accuracy={q: a for q, a in v.jpeg_accuracy.items() if q == 85})
        for v in variants
    ]
    for label, mode, pick in runs:
        pool = sizes_only if pick == "sizes" else variants
        static = None if pick == "sizes" else pick
        with Stopwatch() as watch:
            r = simulate_clients(
                clients, pool, args.devices, mode, seconds=args.seconds, static_variant=static
            )
        results[label] = r
        say(
            f"| {label} | {r['on_time']:.2%} | {r['dropped']:.2%} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['accuracy']:.3f} | {r['utilization']:.0%} | "
            f"{watch.elapsed_s:.1f} |"
        )
    say()
    adaptive = results["rheostat (adaptive)"]
    say(
        "rheostat's variants: " + ", ".join(f"{k} {v:.0%}" for k, v in adaptive["variants"].items())
    )
    say(
        "rheostat's JPEG qualities: "
        + ", ".join(f"{k} {v:.0%}" for k, v in adaptive["qualities"].items())
    )
    good = [
        (r["accuracy"], k)
        for k, r in results.items()
        if k.startswith("static") and r["on_time"] >= 0.99
    ]
    if good:
        accuracy, best = max(good)
        say(
            f"best static choice with >= 99 % on time: {best} (accuracy {accuracy:.3f}, "
            f"utilization {results[best]['utilization']:.0%})"
        )
        say(
            f"rheostat: {adaptive['on_time']:.2%} on time (target >= 99.5 %), accuracy "
            f"{adaptive['accuracy']:.3f} = {adaptive['accuracy'] / accuracy:.2f}x the best "
            f"static's (target >= 1.00x)"
        )
    else:
        say("no static choice reaches 99 % on time")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
