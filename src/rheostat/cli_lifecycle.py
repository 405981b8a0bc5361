"""`rheostat` commands for the model lifecycle and live policies.

`retrain`, `register`, `optimize` and `rollback` change a model repository on disk; with
`--server URL` they then ask that server to load the family, which swaps the new versions in
with no request failed. `apps` reads and changes a running server's app policies.
`sample-data` writes the data sets the walk-throughs use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer

from rheostat.cli import _user_errors, app, console

__all__ = ["apps_app"]

Repo = Annotated[Path, typer.Option(help="Folder of model families.")]
Server = Annotated[
    str | None, typer.Option(help="A running server to load the changed family into.")
]


def _profile(family_dir: Path, variants: list[str]) -> None:
    """Measure what was just registered on this machine's device types (profile.json)."""
    from rheostat.profiler import profile_served_versions

    console.log(f"profiling {', '.join(variants)} on this machine ...")
    profile_served_versions(family_dir, variants)


def _reload(server: str | None, family: str) -> None:
    if server is None:
        console.print(f"to serve it: POST {{server}}/v2/repository/models/{family}/load")
        return
    try:
        r = httpx.post(f"{server.rstrip('/')}/v2/repository/models/{family}/load", timeout=300)
    except httpx.HTTPError as exc:
        raise ValueError(f"--server {server}: {exc}") from None
    if r.status_code != 200:
        raise ValueError(f"--server {server}: loading {family} answered {r.status_code}: {r.text}")
    console.print(f"{server}: {family} reloaded (new versions swapped in)")


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.load(path)
        return np.asarray(data["x"]), np.asarray(data["y"])
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"--data {path}: expected an .npz file with arrays x and y ({exc})"
        ) from None


@app.command()
def retrain(
    family: Annotated[str, typer.Option(help="The family to retrain (one with a recipe).")],
    data: Annotated[Path, typer.Option(help=".npz with x [n, ...] inputs and y [n] labels.")],
    model_repository: Repo = Path("model_repository"),
    variant: Annotated[
        list[str] | None, typer.Option(help="Only these variants (default: every one).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs.")] = None,
    server: Server = None,
) -> None:
    """Fine-tune a family's variants on new labelled data and register new versions."""
    from rheostat.lifecycle.retrain import retrain_family

    with _user_errors():
        x, y = _load_npz(data)
        report = retrain_family(
            model_repository / family, x, y, variants=variant, epochs=epochs,
            progress=console.log,
        )  # fmt: skip
        print(json.dumps(report, indent=1))
        _profile(model_repository / family, list(report))
        _reload(server, family)


@app.command()
def register(
    family: Annotated[str, typer.Option(help="The family.")],
    variant: Annotated[str, typer.Option(help="The variant the new version belongs to.")],
    model: Annotated[Path, typer.Option(help="The new version's model.onnx.")],
    accuracy: Annotated[float, typer.Option(help="Its measured accuracy (0..1).")],
    accuracy_source: Annotated[str, typer.Option(help="How that accuracy was measured.")],
    model_repository: Repo = Path("model_repository"),
    server: Server = None,
) -> None:
    """Register a model file as the next version of a variant."""
    from rheostat.lifecycle.registry import register_version

    with _user_errors():
        if not model.is_file():
            raise ValueError(f"--model {model}: no such file")
        info = register_version(
            model_repository / family, variant, model, accuracy=accuracy,
            accuracy_source=accuracy_source, metadata={"source_file": str(model)},
        )  # fmt: skip
        console.print(f"registered {family}.{variant} version {info.version}")
        _profile(model_repository / family, [variant])
        _reload(server, family)


@app.command()
def rollback(
    family: Annotated[str, typer.Option(help="The family.")],
    variant: Annotated[str, typer.Option(help="The variant whose served version to retire.")],
    model_repository: Repo = Path("model_repository"),
    server: Server = None,
) -> None:
    """Retire a variant's served version: the one before it is served again."""
    from rheostat.lifecycle.registry import rollback as retire

    with _user_errors():
        retired, served = retire(model_repository / family, variant)
        console.print(f"{family}.{variant}: version {retired} retired, {served} served")
        _reload(server, family)


@app.command()
def optimize(
    family: Annotated[str, typer.Option(help="The family.")],
    variant: Annotated[str, typer.Option(help="The float variant to quantize.")],
    model_repository: Repo = Path("model_repository"),
    max_drop: Annotated[
        float, typer.Option(help="Refuse when int8 loses more accuracy than this.")
    ] = 0.01,
    min_speedup: Annotated[
        float, typer.Option(help="Refuse unless int8 is this much faster at batch 1 or 32.")
    ] = 1.0,
    server: Server = None,
) -> None:
    """Quantize a variant to int8, measure accuracy and speed, and register the copy as the
    variant `<variant>_int8` when it keeps its accuracy and is faster."""
    from rheostat.lifecycle.optimize import optimize_variant

    with _user_errors():
        report = optimize_variant(
            model_repository / family, variant, max_drop=max_drop, min_speedup=min_speedup
        )
        print(json.dumps(report, indent=1))
        if report["registered"]:
            _profile(model_repository / family, [f"{variant}_int8"])
            _reload(server, family)


@app.command("sample-data")
def sample_data(
    name: Annotated[
        str,
        typer.Argument(
            help="digits-drifted: the digits as a drifted sensor sees them (.npz); "
            "lte-uplink: a seeded LTE-like uplink bandwidth trace, Mbit/s per second."
        ),
    ],
    output: Annotated[Path, typer.Option(help="The file to write.")],
) -> None:
    """Write a sample data set: x, y (to retrain on) and x_test, y_test (to measure), or a
    bandwidth trace (for `rheostat shaped-run --trace`)."""
    from rheostat.lifecycle.digits import drifted_digits_split
    from rheostat.network.traces import synthetic_trace

    with _user_errors():
        if name == "lte-uplink":
            trace = synthetic_trace("lte-uplink", seconds=120, median_mbps=8.0)
            output.write_text("".join(f"{v}\n" for v in trace.mbps))
            console.print(f"wrote {output}: {trace.describe()}")
            return
        if name != "digits-drifted":
            raise ValueError(f"unknown data set {name!r}; expected digits-drifted or lte-uplink")
        x, y, x_test, y_test = drifted_digits_split()
        np.savez(output, x=x, y=y, x_test=x_test, y_test=y_test)
        console.print(f"wrote {output}: {len(y)} rows to retrain on, {len(y_test)} to measure")


apps_app = typer.Typer(
    no_args_is_help=True, help="Read and change a running server's app policies."
)
app.add_typer(apps_app, name="apps")
ServerUrl = Annotated[str, typer.Option(help="The server, e.g. http://127.0.0.1:8000.")]


def _call(method: str, url: str, body: Any = None) -> Any:
    try:
        r = httpx.request(method, url, json=body, timeout=30)
    except httpx.HTTPError as exc:
        raise ValueError(f"{url}: {exc}") from None
    if r.status_code >= 400:
        raise ValueError(r.json().get("error", r.text) if r.content else str(r.status_code))
    return r.json()


@apps_app.command("list")
def apps_list(server: ServerUrl = "http://127.0.0.1:8000") -> None:
    """Print every app policy the server holds."""
    with _user_errors():
        print(json.dumps(_call("GET", f"{server.rstrip('/')}/rheostat/apps"), indent=1))


@apps_app.command("set")
def apps_set(
    name: Annotated[str, typer.Argument(help="The app.")],
    server: ServerUrl = "http://127.0.0.1:8000",
    family: Annotated[str | None, typer.Option(help="The only family it may use.")] = None,
    slo_ms: Annotated[float | None, typer.Option(help="Latency SLO (ms).")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Accuracy floor (0..1).")] = None,
    max_energy_j: Annotated[float | None, typer.Option(help="Joules per request.")] = None,
    priority: Annotated[int | None, typer.Option(help="1 highest; 0 the default level.")] = None,
    max_share: Annotated[float | None, typer.Option(help="Share cap under pressure.")] = None,
) -> None:
    """Create an app's policy or change some of its fields; effective at once."""
    fields = {
        "family": family, "slo_ms": slo_ms, "min_accuracy": min_accuracy,
        "max_energy_j": max_energy_j, "priority": priority, "max_share": max_share,
    }  # fmt: skip
    body = {k: v for k, v in fields.items() if v is not None}
    with _user_errors():
        result = _call("PUT", f"{server.rstrip('/')}/rheostat/apps/{name}", body)
        print(json.dumps({name: result}, indent=1))


@apps_app.command("delete")
def apps_delete(
    name: Annotated[str, typer.Argument(help="The app.")],
    server: ServerUrl = "http://127.0.0.1:8000",
) -> None:
    """Remove an app's policy; its requests are then refused as from an unknown app."""
    with _user_errors():
        _call("DELETE", f"{server.rstrip('/')}/rheostat/apps/{name}")
        console.print(f"app {name!r} removed")
