"""The Open Inference Protocol (KServe v2) HTTP API on Starlette.

Routes follow the protocol and Triton's extensions (binary tensor data, classification,
model repository, statistics). A model is a family (`efficientnet_lite`: rheostat picks the
variant) or a pinned variant (`efficientnet_lite.lite0`); `versions/N` applies to variants.
Every error is `{"error": message}` with the status from `rheostat.errors` (429 carries
`Retry-After`); a request never takes the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

import rheostat
from rheostat.admission import RequestOptions
from rheostat.api import dataplane
from rheostat.api.codec import HEADER_LENGTH_HEADER, decode_infer_request, encode_infer_response
from rheostat.api.openapi import openapi_description
from rheostat.apps import APP_FIELDS, app_policy
from rheostat.clock import unix_time_s
from rheostat.control.live import LiveControl
from rheostat.devices.work import PayloadKind
from rheostat.engine import Engine, EngineState
from rheostat.errors import (
    ConfigError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    RequestError,
)
from rheostat.lifecycle.feedback import Answer, FeedbackBook, Retrainer
from rheostat.monitoring import TimeSeries
from rheostat.network.clients import ClientReport, Instruction
from rheostat.network.serving import SERVER_SHARE, engine_registry
from rheostat.profiling import LatencyProfile
from rheostat.repository.loader import Family

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
"""The web page's files (dashboard.html and what it loads)."""

log = logging.getLogger("rheostat.api")

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "statistics"]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status, headers, media_type="application/json")


def _error(exc: RequestError) -> Response:
    headers = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    return _json({"error": str(exc)}, exc.http_status, headers)


Handler = Callable[[Request], Awaitable[Response]]


def _guard(handler: Handler) -> Handler:
    """Turn rheostat's errors into their HTTP answers."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as exc:
            return _error(exc)

    return wrapped


class OipApi:
    def __init__(
        self,
        engine: Engine,
        control: LiveControl | None = None,
        series: TimeSeries | None = None,
        feedback: FeedbackBook | None = None,
        retrainer: Retrainer | None = None,
    ) -> None:
        self.engine = engine
        self.control = control
        self.feedback_book = feedback or FeedbackBook()
        self.retrainer = retrainer
        self.series = series or TimeSeries(engine.capacity_rps)
        self.clients = engine_registry(engine)
        if self.series not in engine.monitors:
            engine.monitors.append(self.series)

    async def timeseries(self, request: Request) -> Response:
        """rheostat's own: per-second demand, capacity, served, accuracy and SLO attainment
        per family, the plan and recent plan changes (the web page polls this)."""
        engine = self.engine
        offset = unix_time_s() - engine.clock.now()
        data = self.series.snapshot(engine.clock.now(), offset)
        serving: dict[str, str | None] = {d.name: None for d in engine.config.devices}
        for weights in engine.plan.split.values():
            for replica, weight in weights.items():
                if weight > 0:
                    serving[replica.device] = replica.key
        data["plan"] = serving
        events = self.control.status()["events"] if self.control is not None else []
        data["events"] = [
            {**e, "time": e["time_s"] + offset} for e in events if e.get("status") != "solving"
        ]
        return _json(data)

    async def dashboard(self, request: Request) -> Response:
        page = STATIC / "dashboard.html"
        if not page.is_file():
            return _json({"error": "the web page is not installed"}, 404)
        return FileResponse(page, media_type="text/html")

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/dashboard")

    async def openapi(self, request: Request) -> Response:
        families = self.engine.repository.families.values()
        models = [f.name for f in families] + [
            f"{f.name}.{v}" for f in families for v in f.versions
        ]
        versions = sorted({str(v) for f in families for vs in f.versions.values() for v in vs})
        return _json(openapi_description(models, versions))

    async def plan(self, request: Request) -> Response:
        """rheostat's own: the current plan (split per family), the devices (with the Ray node
        of each remote one, and whether it is lost) and the controller's log."""
        engine = self.engine
        split = {
            family: {f"{r.key}@{r.device}": w for r, w in weights.items()}
            for family, weights in engine.plan.split.items()
        }
        devices = [
            {
                "name": d.name,
                "type": d.device_type,
                "kind": d.kind.value,
                "threads": d.num_threads,
                "node_id": d.node_id,
                "worker_node_id": getattr(engine.workers.get(d.name), "worker_node_id", None),
                "worker_pid": getattr(engine.workers.get(d.name), "pid", None),
                "lost": d.name in engine.lost_devices,
                "power": _power(engine.power.get(d.name)),
            }
            for d in engine.config.devices
        ]
        control = self.control.status() if self.control is not None else None
        return _json(
            {"split": split, "devices": devices, "control": control, "profiles": self._profiles()}
        )

    def _profiles(self) -> dict[str, dict[str, object]]:
        """What the planner knows of each replica: load-time median batch latencies and,
        where `rheostat profile` measured them, p99s (so a simulation can use the same); the
        joules of one request alone (what energy budgets are checked against)."""
        engine = self.engine
        types = {d.name: d.device_type for d in engine.config.devices}
        return {
            f"{replica.key}@{replica.device}": {
                "device_type": types[replica.device],
                "p50_s": {str(b): s for b, s in sorted(points.items())},
                "p99_s": {
                    str(b): s for b, s in sorted(engine.tail_profiles.get(replica, {}).items())
                },
                "energy_j": engine.energy.get(replica),
            }
            for replica, points in sorted(engine.base_profiles.items())
        }

    # -- health and metadata ----------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.engine.state is EngineState.READY
        return _json({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return _json(
            {"name": "rheostat", "version": rheostat.__version__, "extensions": EXTENSIONS}
        )

    def _model(self, request: Request) -> tuple[str, Family, str | None]:
        name = request.path_params["model"]
        family, variant = self.engine.resolve(name)
        version = request.path_params.get("version")
        if version is not None:
            self._check_version(name, family, variant, version)
        return name, family, variant

    def _check_version(self, name: str, family: Family, variant: str | None, version: str) -> None:
        served = str(self.engine.loaded_versions.get(f"{family.name}.{variant}", ""))
        if variant is None and version == "1":
            return
        if version != served:
            available = [str(v) for v in family.versions.get(variant or "", ())]
            raise ModelNotFoundError(
                f"version {version!r} of model {name!r} is not served; served version: "
                f"{served or 'none'} (on disk: {available or ['1']})"
            )

    async def model_metadata(self, request: Request) -> Response:
        name, family, variant = self._model(request)
        config = family.config
        versions = ["1"] if variant is None else [str(v) for v in family.versions[variant]]
        inputs = [
            {"name": a.name, "datatype": a.datatype, "shape": list(a.shape)}
            for a in dataplane.accepted_inputs(family, variant)
        ]
        output = config.output
        variants = {
            v.name: self._variant_metadata(family, v.name)
            for v in config.variants.values()
            if variant in (None, v.name)
        }
        return _json(
            {
                "name": name,
                "versions": versions,
                "platform": config.platform,
                "inputs": inputs,
                "outputs": [
                    {"name": output.name, "datatype": output.datatype, "shape": [-1, *output.dims]}
                ],
                "parameters": {"max_batch_size": config.max_batch_size, "variants": variants},
            }
        )

    def _variant_metadata(self, family: Family, name: str) -> dict[str, Any]:
        """A variant's accuracy, the image size it wants (the shorter side of the frames
        to send) and its batch-1 latency on its slowest device, as measured at load."""
        v = family.config.variants[name]
        entry: dict[str, Any] = {"accuracy": v.accuracy, "accuracy_source": v.accuracy_source}
        if v.preprocessing is not None:
            entry["input_size"] = v.preprocessing.resize_shorter_px
        if v.jpeg_accuracy:
            entry["jpeg_accuracy"] = {str(q): a for q, a in sorted(v.jpeg_accuracy.items())}
        latency = [
            LatencyProfile(points).latency_s(1)
            for replica, points in self.engine.base_profiles.items()
            if replica.family == family.name and replica.variant == name and points
        ]
        if latency:
            entry["latency_ms"] = round(max(latency) * 1e3, 3)
        return entry

    async def model_ready(self, request: Request) -> Response:
        name, family, variant = self._model(request)
        ready = self.engine.is_ready(family.name, variant)
        return _json({"name": name, "ready": ready}, 200 if ready else 503)

    # -- inference --------------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        name, family, variant = self._model(request)
        limits = self.engine.config
        clock = self.engine.clock
        started = clock.now()
        try:
            body = await self._body(request)
            received = clock.now()
            decoded = decode_infer_request(
                body,
                header_length=_header_length(request),
                max_body_bytes=limits.max_request_bytes,
                max_elements=limits.max_tensor_elements,
            )
            dataplane.check_outputs(family, decoded)
            payloads = dataplane.to_payloads(family, variant, decoded, limits.max_image_pixels)
            options = dataplane.to_options(decoded, family, self.engine.config.apps)
            report = dataplane.client_report(decoded, len(body))
        except RequestError as error:  # a bad request for a known model: a failure to count
            self.engine.report_error(family.name, error)
            raise
        instruction = None
        if report is not None:
            instruction = self.clients.report(family.name, report, clock.now())
            options = self._client_options(options, report, instruction, variant, started)
        try:
            outcome = await self.engine.infer(family, variant, payloads, options)
        except RequestError as error:
            if report is not None and error.http_status in (429, 504):  # shed or dropped
                self.clients.outcome(family.name, False, clock.now())
            raise
        if report is not None:
            met = all(r.finished_s <= outcome.deadline_s for r in outcome.results)
            self.clients.outcome(family.name, met, clock.now())
        response = dataplane.build_response(name, family, decoded, outcome)
        if instruction is not None:  # what the client should send next
            if instruction.input_size:
                response.parameters["input_size"] = instruction.input_size
            if instruction.jpeg_quality is not None:
                response.parameters["jpeg_quality"] = instruction.jpeg_quality
            response.parameters["client_variant"] = instruction.variant or ""
        # by the server's clock alone, so a client can tell its upload from the rest:
        # receiving the body, and everything from the handler's start to the answer
        response.parameters["receive_ms"] = round((received - started) * 1e3, 3)
        response.parameters["server_ms"] = round((clock.now() - started) * 1e3, 3)
        if decoded.id:  # remembered for labelled feedback (`POST /rheostat/feedback`)
            self._remember(decoded.id, outcome, payloads)
        binary = dataplane.binary_outputs(decoded, response)
        content, headers = encode_infer_response(response, binary_outputs=binary)
        return Response(content, 200, headers)

    def _client_options(
        self,
        options: RequestOptions,
        report: ClientReport,
        instruction: Instruction,
        variant: str | None,
        started: float,
    ) -> RequestOptions:
        """An edge client's request: its mapped variant first, and a deadline of what its
        end-to-end SLO leaves (`SERVER_SHARE` of it): less the round trip, less what this
        server has already spent since the request's first bytes arrived (the upload before
        that is the client's estimate, already out of its `slo_ms`)."""
        spent = self.engine.clock.now() - started
        left = report.slo_s * SERVER_SHARE - report.rtt_s - spent
        timeout = left if options.timeout_s is None else min(options.timeout_s, left)
        prefer = instruction.variant if variant is None else None
        return dataclasses.replace(options, timeout_s=max(timeout, 1e-6), prefer=prefer)

    def _remember(self, request_id: str, outcome: Any, payloads: Any) -> None:
        """Keep what labelled feedback needs: the classes answered, and, for a family that
        is retrained on its feedback, copies of the input rows."""
        book = self.feedback_book
        keep = outcome.family in book.keep_inputs_for and all(
            p.kind is PayloadKind.TENSOR for p in payloads
        )
        book.remember(
            request_id,
            Answer(
                family=outcome.family,
                variant=f"{outcome.family}.{outcome.variant}",
                version=outcome.version,
                classes=tuple(int(r.output.argmax()) for r in outcome.results),
                claimed_accuracy=outcome.accuracy,
                rows=tuple(np.array(p.data, copy=True) for p in payloads) if keep else None,
                num_classes=int(outcome.results[0].output.size),
            ),
        )

    async def _json_body(self, request: Request) -> Any:
        body = await self._body(request)
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidRequestError(f"malformed JSON body: {exc}") from None

    # -- lifecycle: feedback and live policies ---------------------------------------------
    async def feedback(self, request: Request) -> Response:
        """rheostat's own: the true classes of an answer given earlier to a request with an
        `id`: `{"id": ..., "labels": [...]}` or `{"items": [{"id": ..., "labels": [...]}]}`."""
        data = await self._json_body(request)
        items = data.get("items") if isinstance(data, dict) and "items" in data else [data]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InvalidRequestError(
                'feedback: expected {"id": ..., "labels": [...]} or {"items": [...]} of those'
            )
        served = dict(self.engine.loaded_versions)
        statuses: dict[str, Any] = {}
        errors = []
        for item in items:
            try:
                status = self.feedback_book.feedback(item.get("id"), item.get("labels"), served)
                statuses[status["family"]] = status
            except RequestError as exc:
                if len(items) == 1:
                    raise
                errors.append(str(exc))
        return _json({"accepted": len(items) - len(errors), "errors": errors,
                      "families": statuses})  # fmt: skip

    async def feedback_status(self, request: Request) -> Response:
        served = dict(self.engine.loaded_versions)
        book = self.feedback_book
        return _json({
            "families": {f: book.status(f, served) for f in sorted(book.windows)},
            "retraining": self.retrainer.history if self.retrainer is not None else None,
        })  # fmt: skip

    async def clients_status(self, request: Request) -> Response:
        """Edge clients per family: their reports, and the variant and input size each is
        mapped to."""
        return _json({"families": self.clients.snapshot(self.engine.clock.now())})

    async def apps(self, request: Request) -> Response:
        return _json({name: _app_dict(p) for name, p in sorted(self.engine.config.apps.items())})

    async def set_app(self, request: Request) -> Response:
        """Create or change an app's policy while serving; it applies to the next request
        (and to the next plan, for an energy budget). Fields left out keep their value."""
        name = request.path_params["app"]
        data = await self._json_body(request)
        if not isinstance(data, dict):
            raise InvalidRequestError(
                f"app {name!r}: expected a JSON object of {sorted(APP_FIELDS)}"
            )
        old = self.engine.config.apps.get(name)
        merged = {**(_app_dict(old) if old is not None else {}), **data}
        family = merged.get("family")
        if family is not None and (
            not isinstance(family, str) or family not in self.engine.repository.families
        ):
            raise InvalidRequestError(
                f"app {name!r}: family {family!r} is not served; known families: "
                f"{sorted(self.engine.repository.families)}"
            )
        try:
            policy = app_policy(name, merged)
        except ConfigError as exc:
            raise InvalidRequestError(str(exc)) from None
        self.engine.set_app(policy)
        return _json(_app_dict(policy), 200 if old is not None else 201)

    async def delete_app(self, request: Request) -> Response:
        name = request.path_params["app"]
        if name not in self.engine.config.apps:
            raise NotFoundError(
                f"unknown app {name!r}; known apps: {sorted(self.engine.config.apps)}"
            )
        self.engine.set_app(None, name)
        return _json({})

    async def _body(self, request: Request) -> bytes:
        limit = self.engine.config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(
                f"request body of {declared} bytes exceeds the limit of {limit} bytes"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- repository and statistics ----------------------------------------------------------
    async def repository_index(self, request: Request) -> Response:
        entries = []
        for family in self.engine.repository.families.values():
            ready = self.engine.is_ready(family.name, None)
            entries.append(_index_entry(family.name, "1", ready))
            for variant in family.config.variants:
                key = f"{family.name}.{variant}"
                version = str(self.engine.loaded_versions.get(key, family.served_version(variant)))
                entries.append(
                    _index_entry(key, version, self.engine.is_ready(family.name, variant))
                )
        return _json(entries)

    async def repository_load(self, request: Request) -> Response:
        await self.engine.load(request.path_params["model"])
        return _json({})

    async def repository_unload(self, request: Request) -> Response:
        await self.engine.unload(request.path_params["model"])
        return _json({})

    async def statistics(self, request: Request) -> Response:
        if "model" in request.path_params:
            _, family, variant = self._model(request)
            keys = [f"{family.name}.{v}" for v in family.config.variants if variant in (None, v)]
        else:
            keys = [
                f"{f.name}.{v}"
                for f in self.engine.repository.families.values()
                for v in f.config.variants
            ]
        stats = [
            self.engine.stats.model_stats(key, self.engine.loaded_versions.get(key)) for key in keys
        ]
        return _json({"model_stats": stats})


def _power(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    return {"idle_w": model.idle_w, "active_w": model.active_w, "source": model.source}


def _app_dict(policy: Any) -> dict[str, Any]:
    return {k: getattr(policy, k) for k in sorted(APP_FIELDS)}


def _index_entry(name: str, version: str, ready: bool) -> dict[str, str]:
    entry = {"name": name, "version": version, "state": "READY" if ready else "UNAVAILABLE"}
    if not ready:
        entry["reason"] = "unloaded"
    return entry


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH_HEADER)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidRequestError(
            f"header {HEADER_LENGTH_HEADER}: {value!r} is not a non-negative integer"
        )
    return int(value)


def _routes(api: OipApi) -> list[BaseRoute]:
    model = "/v2/models/{model}"
    versioned = model + "/versions/{version}"
    table: list[tuple[str, Handler, str]] = [
        ("/v2/health/live", api.live, "GET"),
        ("/v2/health/ready", api.ready, "GET"),
        ("/v2", api.server_metadata, "GET"),
        ("/v2/models/stats", api.statistics, "GET"),
        ("/v2/repository/index", api.repository_index, "POST"),
        ("/rheostat/plan", api.plan, "GET"),
        ("/rheostat/timeseries", api.timeseries, "GET"),
        ("/dashboard", api.dashboard, "GET"),
        ("/", api.home, "GET"),
        ("/openapi.json", api.openapi, "GET"),
        ("/v2/repository/models/{model}/load", api.repository_load, "POST"),
        ("/v2/repository/models/{model}/unload", api.repository_unload, "POST"),
        ("/rheostat/feedback", api.feedback, "POST"),
        ("/rheostat/feedback", api.feedback_status, "GET"),
        ("/rheostat/apps", api.apps, "GET"),
        ("/rheostat/clients", api.clients_status, "GET"),
        ("/rheostat/apps/{app}", api.set_app, "PUT"),
        ("/rheostat/apps/{app}", api.delete_app, "DELETE"),
    ]
    for prefix in (model, versioned):
        table += [
            (prefix, api.model_metadata, "GET"),
            (prefix + "/ready", api.model_ready, "GET"),
            (prefix + "/infer", api.infer, "POST"),
            (prefix + "/stats", api.statistics, "GET"),
        ]
    routes: list[BaseRoute] = [
        Route(path, _guard(handler), methods=[method]) for path, handler, method in table
    ]
    routes.append(Mount("/static", StaticFiles(directory=STATIC, check_dir=False)))
    return routes


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _json({"error": f"{detail}: {request.method} {request.url.path}"}, status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    message = f"internal error on {request.method} {request.url.path}: {type(exc).__name__}"
    return _json({"error": message}, 500)


def create_app(
    engine: Engine,
    *,
    manage_engine: bool = True,
    progress: Callable[[str], None] | None = None,
    control: LiveControl | None = None,
    series: TimeSeries | None = None,
    feedback: FeedbackBook | None = None,
    retrainer: Retrainer | None = None,
) -> Starlette:
    """The ASGI app; with `manage_engine` it starts and stops the engine with the server."""

    async def boot() -> None:
        await engine.start(progress)
        if control is not None:
            control.start()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Load in the background: health/live answers at once, ready turns 200 when loaded.
        task = asyncio.create_task(boot()) if manage_engine else None
        if task is not None:
            task.add_done_callback(_report_failure)
        try:
            yield
        finally:
            if control is not None:
                control.stop()
            if task is not None:
                task.cancel()
                await engine.stop()

    return Starlette(
        routes=_routes(OipApi(engine, control, series, feedback, retrainer)),
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("engine failed to start: %s", task.exception())
