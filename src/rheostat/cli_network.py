"""Edge-client commands: `rheostat camera` sends frames under an end-to-end SLO and records
each frame's fate; `rheostat shaped-run` runs a command behind a real shaped link (its own
network namespace, `tc` following a bandwidth trace)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from rheostat.cli import _user_errors, app, console

__all__: list[str] = []


@app.command()
def camera(
    server: Annotated[str, typer.Option(help="The server's URL.")],
    model: Annotated[str, typer.Option(help="The image family.")] = "efficientnet_lite",
    mode: Annotated[
        str, typer.Option(help="adaptive (rheostat), static, client (client-only), server.")
    ] = "adaptive",
    variant: Annotated[str | None, typer.Option(help="The variant of --mode static.")] = None,
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 10.0,
    slo_ms: Annotated[float, typer.Option(help="End-to-end SLO: capture to answer.")] = 100.0,
    seconds: Annotated[float, typer.Option(help="How long to send.")] = 10.0,
    client_id: Annotated[str | None, typer.Option(help="Default: a random id.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write one JSON line per frame here.")] = None,
) -> None:
    """Send camera frames (the bundled sample photos) and print the on-time ratio, the
    end-to-end p50/p99 and the mean accuracy."""
    from rheostat.lifecycle.images import sample_images
    from rheostat.network.camera import CameraMode, run_camera, summarize_frames, write_records

    with _user_errors():
        modes = [m.value for m in CameraMode]
        if mode not in modes:
            raise ValueError(f"--mode {mode!r}: expected one of {modes}")
        if fps <= 0 or slo_ms <= 0 or seconds <= 0:
            raise ValueError(f"--fps {fps}, --slo-ms {slo_ms} and --seconds {seconds} must be > 0")
        frames = list(sample_images().values())
        records = asyncio.run(
            run_camera(
                server, model, frames, mode=CameraMode(mode), fps=fps, slo_ms=slo_ms,
                seconds=seconds, variant=variant, client_id=client_id,
            )
        )  # fmt: skip
        if out is not None:
            write_records(records, out)
        print(json.dumps(summarize_frames(records, slo_ms / 1e3)))


@app.command(
    "shaped-run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def shaped_run(
    ctx: typer.Context,
    trace: Annotated[
        Path | None, typer.Option(help="A bandwidth trace (Mbit/s per second, or Mahimahi).")
    ] = None,
    rate_mbps: Annotated[float, typer.Option(help="A fixed uplink rate (no --trace).")] = 10.0,
    scale: Annotated[float, typer.Option(help="Multiply the trace's rates.")] = 1.0,
    offset_s: Annotated[float, typer.Option(help="Start this far into the trace.")] = 0.0,
) -> None:
    """Run the command after `--` in its own network namespace, its uplink shaped with tc
    (following --trace every second); `{host}` in it becomes the host's address there.
    Needs root. The namespace is deleted when the command ends."""
    from rheostat.network.emulation import ShapedLink, available
    from rheostat.network.traces import read_trace

    with _user_errors():
        if not ctx.args:
            raise ValueError("no command: give it after --, e.g. -- rheostat camera ...")
        why = available()
        if why is not None:
            raise ValueError(why)
        shaped = read_trace(trace).scaled(scale) if trace is not None else None
        start = shaped.at(0, offset_s) if shaped is not None else rate_mbps
        with ShapedLink(rate_mbps=start) as link:
            if shaped is not None:
                link.follow(shaped, offset_s)
                console.log(f"following {shaped.describe()} from {offset_s:g} s")
            command = [a.replace("{host}", link.host_ip) for a in ctx.args]
            done = subprocess.run(link.command(command), check=False)
        raise typer.Exit(done.returncode)
