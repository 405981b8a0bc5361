"""The `rheostat` command line (flag names follow tritonserver's where they apply)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rheostat.config import ServerConfig
from rheostat.devices.device import Device, default_devices, parse_device
from rheostat.devices.power import parse_power
from rheostat.errors import ConfigError

if TYPE_CHECKING:
    from rheostat.engine import Engine

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True, soft_wrap=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise typer.BadParameter(f"cannot bind {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A bad flag, device or repository: one clear line and exit status 2, no traceback."""
    try:
        yield
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _devices(specs: list[str] | None) -> tuple[Device, ...]:
    return tuple(parse_device(d, i) for i, d in enumerate(specs)) if specs else default_devices()


def _serving_devices(
    specs: list[str] | None, ray_address: str | None, ray_cpus_per_device: int | None
) -> tuple[Device, ...]:
    if ray_address is None:
        return _devices(specs)
    if specs:
        raise ValueError("--device and --ray-address: give one (Ray finds the devices)")
    return _ray_devices(ray_address, ray_cpus_per_device)


def _discovery(
    ray_address: str | None, cpus_per_device: int | None
) -> Callable[[], tuple[Device, ...]] | None:
    """On a Ray cluster: how the engine finds devices of nodes that join while it serves."""
    if ray_address is None:
        return None
    from rheostat.distributed import discover_devices, nodes

    return lambda: discover_devices(nodes(), cpus_per_device)


def _ray_devices(address: str, cpus_per_device: int | None) -> tuple[Device, ...]:
    from rheostat.distributed import connect

    try:
        devices = connect(address, cpus_per_device)
    except ImportError:
        raise ValueError("--ray-address needs Ray: pip install 'rheostat[ray]'") from None
    except ConnectionError as exc:
        raise ValueError(f"--ray-address {address!r}: cannot join the Ray cluster: {exc}") from None
    listed = ", ".join(f"{d.name} ({d.device_type})" for d in devices)
    console.print(f"rheostat: Ray cluster at {address}: {listed}", highlight=False)
    return devices


@app.command()
def serve(
    model_repository: Annotated[Path, typer.Option(help="Folder of model families.")] = Path(
        "model_repository"
    ),
    http_port: Annotated[int, typer.Option(help="HTTP port (0: any free port).")] = 8000,
    http_address: Annotated[str, typer.Option("--http-address", "--host")] = "127.0.0.1",
    device: Annotated[
        list[str] | None,
        typer.Option(help="Device, repeatable: cpu, cpu:0-1, cpu:0,2, cuda:0, NAME=cpu:1."),
    ] = None,
    profile_repeats: Annotated[int, typer.Option(help="Timed runs per batch size at load.")] = 3,
    http_max_input_size: Annotated[
        int, typer.Option(help="Largest request body in bytes (413 above it).")
    ] = 64 * 2**20,
    log_level: Annotated[str, typer.Option(help="uvicorn/rheostat log level.")] = "warning",
    planner: Annotated[
        str,
        typer.Option(help="Re-plan live with this planner: milp, greedy, or none (static)."),
    ] = "none",
    apps: Annotated[
        Path | None,
        typer.Option(help="Per-app policies (YAML); default: apps.yaml in the repository."),
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus /metrics port (0: any free port).")
    ] = 8002,
    allow_metrics: Annotated[
        bool, typer.Option("--allow-metrics/--no-metrics", help="Serve Prometheus metrics.")
    ] = True,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Serve on a Ray cluster's devices: its address, auto (the cluster this "
            "machine belongs to) or local (start one here). Default: this machine only."
        ),
    ] = None,
    ray_cpus_per_device: Annotated[
        int | None,
        typer.Option(help="With --ray-address: CPUs per device (default: a node's CPUs)."),
    ] = None,
    power: Annotated[
        list[str] | None,
        typer.Option(
            help="Power of a device type, repeatable: TYPE=IDLE:ACTIVE watts (e.g. cpu1=1:6). "
            "Default: measured with RAPL where readable, else an estimate."
        ),
    ] = None,
    on_drift: Annotated[
        str,
        typer.Option(
            help="When labelled feedback shows accuracy drift: report (log it) or retrain "
            "(fine-tune on the feedback, register, swap in)."
        ),
    ] = "report",
) -> None:
    """Serve a model repository over the Open Inference Protocol (HTTP)."""
    import uvicorn

    from rheostat.api.app import create_app
    from rheostat.apps import load_apps
    from rheostat.engine import Engine
    from rheostat.repository import load_repository

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    with _user_errors():
        apps_file = apps or model_repository / "apps.yaml"
        if on_drift not in ("report", "retrain"):
            raise ValueError(f"--on-drift {on_drift!r}: expected report or retrain")
        config = ServerConfig(
            power=dict(parse_power(p) for p in power or []),
            model_repository=model_repository,
            apps=load_apps(apps_file) if apps is not None or apps_file.is_file() else {},
            http_port=http_port,
            host=http_address,
            devices=_serving_devices(device, ray_address, ray_cpus_per_device),
            profile_repeats=profile_repeats,
            max_request_bytes=http_max_input_size,
        )
        repository = load_repository(model_repository)
    sock = _bind(config.host, config.http_port)
    port = sock.getsockname()[1]
    families = ", ".join(repository.families)
    console.print(f"rheostat: loading {families} from {model_repository}")
    engine = Engine(repository, config)
    engine.discover = _discovery(ray_address, ray_cpus_per_device)

    def progress(message: str) -> None:
        console.print(f"  {message}")
        if message == "ready":
            console.print(f"rheostat: serving on http://{config.host}:{port}/v2", highlight=False)

    control = None
    if planner != "none":
        from rheostat.control.live import LiveControl
        from rheostat.planning import PlannerName

        if planner not in {p.value for p in PlannerName} - {"exhaustive"}:
            console.print(f"[red]error:[/red] --planner {planner!r}: expected milp, greedy or none")
            raise typer.Exit(2)
        control = LiveControl(
            engine, PlannerName(planner), report=lambda line: console.print(line, highlight=False)
        )
    from rheostat.monitoring import ServerMetrics, TimeSeries, serve_metrics

    series = TimeSeries(engine.capacity_rps)
    engine.monitors.append(series)
    if allow_metrics:
        metrics = ServerMetrics(engine, series)
        engine.monitors.append(metrics)
        if control is not None:
            control.listeners.append(metrics.planned)
        try:
            bound = serve_metrics(metrics, config.host, metrics_port)
        except OSError as exc:
            console.print(f"[red]error:[/red] cannot bind metrics port {metrics_port}: {exc}")
            raise typer.Exit(2) from None
        console.print(f"rheostat: metrics on http://{config.host}:{bound}/metrics", highlight=False)
    feedback, retrainer = _feedback(on_drift, model_repository, engine)
    server_app = create_app(
        engine, progress=progress, control=control, series=series, feedback=feedback,
        retrainer=retrainer,
    )  # fmt: skip
    server = uvicorn.Server(
        uvicorn.Config(
            server_app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5
        )
    )
    console.print(f"rheostat: listening on http://{config.host}:{port} (ready when loaded)")
    server.run(sockets=[sock])


def _feedback(on_drift: str, repository: Path, engine: Engine) -> tuple[Any, Any]:
    """The feedback book, and with `--on-drift retrain` what retrains on drift."""
    from rheostat.lifecycle.feedback import FeedbackBook, Retrainer

    feedback = FeedbackBook()
    if on_drift == "retrain":
        return feedback, Retrainer(feedback, repository.absolute(), engine.load)
    return feedback, None


@app.command()
def profile(
    model_repository: Annotated[Path, typer.Option(help="Folder of model families.")] = Path(
        "model_repository"
    ),
    device: Annotated[
        list[str] | None, typer.Option(help="Device(s) to profile on, as for serve.")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed runs per batch size.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed runs per batch size first.")] = 3,
) -> None:
    """Measure every variant on each device type; write profile.json into the repository."""
    from rich.progress import Progress
    from rich.table import Table

    from rheostat.profiler import run_profile
    from rheostat.repository import load_repository

    with _user_errors():
        devices = _devices(device)
        repository = load_repository(model_repository)
    types = {d.device_type for d in devices}
    total = len(types) * sum(len(f.config.variants) for f in repository.families.values())
    with Progress(console=console) as bar:
        task = bar.add_task("profiling", total=total)
        results = run_profile(
            repository, devices, repeats, warmup,
            lambda message, done: bar.update(task, completed=done, description=message),
        )  # fmt: skip
    for device_type, entries in results.items():
        table = Table(title=f"{device_type} (ms; items/s)")
        for column in ("variant", "batch", "p50", "p95", "p99", "items/s", "memory MiB"):
            table.add_column(column)
        for key, entry in entries.items():
            for batch, d in entry["batch"].items():
                table.add_row(
                    key, batch, f"{d['p50_s'] * 1e3:.2f}", f"{d['p95_s'] * 1e3:.2f}",
                    f"{d['p99_s'] * 1e3:.2f}", f"{d['throughput_rps']:.0f}",
                    str(entry["memory_mb"]),
                )  # fmt: skip
        Console().print(table)


@app.command()
def perf(
    model_name: Annotated[
        str, typer.Option("-m", "--model-name", help="Model to measure (family or family.variant).")
    ],
    url: Annotated[
        str, typer.Option("-u", "--url", help="Base URL of any OIP server (rheostat, Triton).")
    ] = "http://localhost:8000",
    concurrency_range: Annotated[
        str | None,
        typer.Option(help="Closed loop, requests in flight: START[:END[:STEP]] (default 1)."),
    ] = None,
    request_rate_range: Annotated[
        str | None, typer.Option(help="Open loop instead, req/s: START[:END[:STEP]].")
    ] = None,
    request_distribution: Annotated[
        str, typer.Option(help="Open-loop arrivals: constant or poisson.")
    ] = "constant",
    measurement_interval_s: Annotated[
        float, typer.Option(help="Length of one measurement window.")
    ] = 5.0,
    warmup_s: Annotated[float, typer.Option(help="Load before measuring each level.")] = 0.5,
    percentile: Annotated[
        float, typer.Option(help="Latency percentile for stability and the plot.")
    ] = 99.0,
    binary: Annotated[
        bool, typer.Option("--binary/--json", help="Binary tensor extension, or plain JSON.")
    ] = True,
    batch_size: Annotated[int, typer.Option("-b", "--batch-size")] = 1,
    input_data: Annotated[str, typer.Option(help="random or zero.")] = "random",
    shape: Annotated[
        list[str] | None, typer.Option(help="NAME:D1,D2,... for variable dims (repeatable).")
    ] = None,
    input_name: Annotated[
        list[str] | None, typer.Option("--input", help="Send only this input (repeatable).")
    ] = None,
    stability_percentage: Annotated[
        float | None, typer.Option(help="Repeat windows until 3 agree within this %.")
    ] = None,
    request_parameter: Annotated[
        list[str] | None,
        typer.Option(help="NAME:VALUE:TYPE sent in every request (e.g. slo_ms:200:int)."),
    ] = None,
    max_trials: Annotated[int, typer.Option(help="Most windows per level when stabilising.")] = 10,
    max_connections: Annotated[int, typer.Option(help="Connection pool of an open loop.")] = 256,
    timeout_s: Annotated[float, typer.Option(help="Per-request timeout.")] = 30.0,
    csv: Annotated[Path | None, typer.Option(help="Write one CSV row per level.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write throughput vs latency (PNG).")] = None,
) -> None:
    """Measure a model's throughput and latency under load, level by level (perf_analyzer)."""
    import asyncio

    from rich.progress import Progress

    from rheostat import perf as kit
    from rheostat.clock import WallClock

    with _user_errors():
        distribution = kit.choice(kit.Distribution, request_distribution, "--request-distribution")
        loads = kit.build_loads(concurrency_range, request_rate_range, distribution)
        measurement = kit.Measurement(
            measurement_interval_s, warmup_s, percentile, stability_percentage, max_trials
        )
        target = kit.Target(
            url, model_name, binary, batch_size,
            kit.choice(kit.InputData, input_data, "--input-data"), tuple(shape or ()),
            tuple(input_name or ()), timeout_s, max_connections, tuple(request_parameter or ()),
        )  # fmt: skip
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            run = kit.run_perf(target, loads, measurement, WallClock(), kit.ProgressBar(bar))
            results = asyncio.run(run)
    Console().print(kit.summary_table(results, measurement.percentiles))
    for line in kit.notes(results):
        console.print(f"  {line}", markup=False)
    if csv is not None:
        kit.write_csv(csv, results, measurement.percentiles)
    if plot is not None:
        kit.write_plot(plot, results, measurement.percentile, f"{model_name} at {target.base_url}")
    if not any(result.num_ok for result in results):
        console.print("[red]error:[/red] no request succeeded at any level")
        raise typer.Exit(1)


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML (cluster, trace, policies).")],
    policy: Annotated[
        list[str] | None,
        typer.Option(help="Policy to run (repeatable; default: the scenario's)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Folder for summary.md/.csv, timelines and the plot.")
    ] = None,
    oracle: Annotated[bool, typer.Option(help="Add the offline oracle bound row.")] = True,
) -> None:
    """Replay a trace through the server's components on a virtual clock, per policy."""
    from rheostat.sim.compare import compare
    from rheostat.sim.policies import policy as policy_named
    from rheostat.sim.scenario import load_scenario
    from rheostat.sim.simulation import RunResult

    with _user_errors():
        loaded = load_scenario(scenario)
        specs = tuple(policy_named(p) for p in policy) if policy else loaded.policies
    trace = loaded.trace
    console.print(
        f"{len(trace)} requests over {trace.duration_s:.0f} s, {len(trace.families)} families, "
        f"{len(loaded.model.devices)} devices"
    )

    def done(run: RunResult) -> None:
        console.print(
            f"  {run.policy}: simulated in {run.wall_s:.1f} s, {len(run.plans)} plans, "
            f"{run.num_loads} model loads"
        )

    result = compare(loaded.model, trace, specs, loaded.settings, oracle, progress=done)
    typer.echo(result.table())
    if output is not None:
        for path in result.write(output, f"{scenario.stem}: {len(trace)} requests"):
            console.print(f"  wrote {path}")


@app.command("build-repository")
def build_repository(
    output: Annotated[Path, typer.Option(help="Where to write the repository.")] = Path(
        "model_repository"
    ),
    family: Annotated[
        list[str] | None,
        typer.Option(help="Only these families (digits, digits_exits, efficientnet_lite)."),
    ] = None,
) -> None:
    """Build the default model repository: train digits (with a cascade) and the multi-exit
    digits network, export and quantize EfficientNet-Lite."""
    from rheostat.lifecycle.default_repository import FAMILIES, build_default_repository

    families = tuple(family) if family else FAMILIES
    with console.status("building the default model repository") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        build_default_repository(output, families=families, progress=progress)
    console.print(f"rheostat: model repository ready in {output}")


def main() -> None:
    app()


from rheostat import cli_lifecycle, cli_network  # noqa: E402, F401  (they add commands)
