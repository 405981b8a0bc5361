"""The thin async loop: drive one load, cut measurement windows, fold them.

A level runs continuously: a warm-up, then back-to-back windows sliced out of the same run.
A request belongs to the window in which its answer arrived, so windows never double count.
With a stability percentage, windows repeat until the last three agree (perf_analyzer).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from rheostat.api.codec import HEADER_LENGTH_HEADER
from rheostat.perf.load import Load, Sleeper
from rheostat.perf.request import InferCall, Target
from rheostat.perf.summary import STANDARD_PERCENTILES, LevelResult, Sample, is_stable, summarize

__all__ = ["Measurement", "ProgressFn", "TargetError", "error_text", "measure_level", "run_perf"]

_TICK_S = 0.1  # how often the progress callback runs


class TargetError(ValueError):
    """The server cannot be measured: unreachable, unknown model, or it rejects the request.

    A ValueError so the CLI reports it as one line with exit status 2 (errors.py's tree
    covers the server's own errors; this one is the client's).
    """


class _ResponseHead(msgspec.Struct):
    parameters: dict[str, Any] = {}


def _parameters(response: httpx.Response) -> dict[str, Any]:
    """The response's `parameters` (server-reported variant, queue and compute time)."""
    length = response.headers.get(HEADER_LENGTH_HEADER)
    body = response.content[: int(length)] if length and length.isdigit() else response.content
    try:
        return msgspec.json.decode(body, type=_ResponseHead).parameters
    except msgspec.DecodeError:
        return {}


def error_text(response: httpx.Response) -> str:
    """The OIP error message of a failed answer (its JSON `error`), else its start."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text[:200].strip() or f"HTTP {response.status_code}"


def _sample(response: httpx.Response, sent_s: float, done_s: float) -> Sample:
    if response.status_code == 200:
        return Sample(sent_s, done_s, 200, parameters=_parameters(response))
    retry = "retry-after" in response.headers
    return Sample(sent_s, done_s, response.status_code, retry, error=error_text(response))


@dataclass(frozen=True, slots=True)
class Measurement:
    """How each level is measured."""

    interval_s: float = 5.0  # length of one measurement window
    warmup_s: float = 0.5  # load before the first window, not counted
    percentile: float = 99.0  # the latency percentile for stability and the plot
    stability_pct: float | None = None  # repeat windows until three agree within this %
    max_windows: int = 10  # give up on stability after this many windows
    drain_s: float = 5.0  # after the last window, wait this long for answers in flight

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.warmup_s < 0:
            raise ValueError(
                f"--measurement-interval-s {self.interval_s} / --warmup-s {self.warmup_s}: "
                "expected an interval > 0 and a warm-up >= 0"
            )
        if not 0 < self.percentile <= 100:
            raise ValueError(f"--percentile {self.percentile}: expected a value in (0, 100]")
        if self.stability_pct is not None and self.stability_pct <= 0:
            raise ValueError(f"--stability-percentage {self.stability_pct}: expected > 0")
        if self.max_windows < 3 and self.stability_pct is not None:
            raise ValueError(f"--max-trials {self.max_windows}: stability needs at least 3")

    @property
    def percentiles(self) -> tuple[float, ...]:
        return tuple(sorted({*STANDARD_PERCENTILES, self.percentile}))

    @property
    def expected_s(self) -> float:
        return self.warmup_s + self.interval_s * (1 if self.stability_pct is None else 3)


ProgressFn = Callable[[Load, float, float], None]  # (load, elapsed_s, expected_s)


@dataclass(slots=True)
class _Log:
    """What one level has sent and what has come back so far."""

    sent_s: list[float] = dataclasses.field(default_factory=list)
    samples: list[Sample] = dataclasses.field(default_factory=list)

    def summarize(
        self, start_s: float, end_s: float, load: Load, batch: int, m: Measurement
    ) -> LevelResult:
        return summarize(self.samples, start_s, end_s, load, batch, m.percentiles, self.sent_s)


async def _send(client: httpx.AsyncClient, call: InferCall, clock: Sleeper, log: _Log) -> None:
    sent_s = clock.now()
    log.sent_s.append(sent_s)
    out = log.samples
    try:
        response = await client.post(call.path, content=call.body, headers=call.headers)
    except httpx.HTTPError as exc:
        out.append(Sample(sent_s, clock.now(), 0, error=f"{type(exc).__name__}: {exc}"))
        return
    out.append(_sample(response, sent_s, clock.now()))


async def _wait(clock: Sleeper, until_s: float, tick: Callable[[], None]) -> None:
    while (left_s := until_s - clock.now()) > 0:
        await clock.sleep(min(_TICK_S, left_s))
        tick()


async def _windows(
    log: _Log, load: Load, clock: Sleeper, m: Measurement, batch_size: int,
    tick: Callable[[], None],
) -> LevelResult:  # fmt: skip
    """Cut windows until one suffices (or three agree); the result spans the windows used."""
    windows: list[LevelResult] = []
    starts = [clock.now()]  # window i spans starts[i] to starts[i + 1]: no gaps between
    while True:
        await _wait(clock, starts[-1] + m.interval_s, tick)
        end_s = clock.now()
        windows.append(log.summarize(starts[-1], end_s, load, batch_size, m))
        starts.append(end_s)
        if m.stability_pct is None:
            return windows[-1]
        stable = is_stable(windows, m.stability_pct, m.percentile)
        if stable or len(windows) >= m.max_windows:
            used = log.summarize(starts[-4], end_s, load, batch_size, m)
            return dataclasses.replace(used, stable=stable)


async def measure_level(
    load: Load, client: httpx.AsyncClient, call: InferCall, clock: Sleeper, m: Measurement,
    batch_size: int = 1, progress: ProgressFn | None = None,
) -> LevelResult:  # fmt: skip
    """Run `load` through a warm-up and its measurement window(s); the level's numbers."""
    log = _Log()
    stop = asyncio.Event()
    task = asyncio.create_task(load.run(lambda: _send(client, call, clock, log), clock, stop))
    start_s = clock.now()

    def tick() -> None:
        if task.done():
            task.result()  # a load that crashed stops the measurement with its error
        if progress is not None:
            progress(load, clock.now() - start_s, m.expected_s)

    try:
        await _wait(clock, start_s + m.warmup_s, tick)
        return await _windows(log, load, clock, m, batch_size, tick)
    finally:
        stop.set()
        await asyncio.wait([task], timeout=m.drain_s)
        task.cancel()  # answers still missing after the drain are not waited for
        await asyncio.gather(task, return_exceptions=True)


async def _metadata(client: httpx.AsyncClient, target: Target) -> Mapping[str, Any]:
    try:
        response = await client.get(f"/v2/models/{target.model}")
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot reach the server at {target.base_url}: {exc}") from None
    if response.status_code != 200:
        raise TargetError(
            f"model {target.model!r}: the server answered {response.status_code}: "
            f"{error_text(response)}"
        )
    try:
        metadata = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        metadata = None
    if not isinstance(metadata, dict):
        raise TargetError(f"{response.url} did not answer with model metadata (a JSON object)")
    return metadata


async def _probe(client: httpx.AsyncClient, call: InferCall) -> None:
    """One request before measuring, so a rejected request fails once, clearly."""
    try:
        response = await client.post(call.path, content=call.body, headers=call.headers)
    except httpx.HTTPError as exc:
        raise TargetError(f"the first infer request failed: {exc}") from None
    if response.status_code not in (200, 429):
        raise TargetError(
            f"the server rejected the generated request ({response.status_code}): "
            f"{error_text(response)}; choose inputs with --input/--shape"
        )


async def run_perf(
    target: Target, loads: Sequence[Load], m: Measurement, clock: Sleeper,
    progress: ProgressFn | None = None,
) -> list[LevelResult]:  # fmt: skip
    """Measure every level in turn with one HTTP client (pool >= the largest concurrency)."""
    size = max(load.num_connections or target.max_connections for load in loads)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(
        base_url=target.base_url, timeout=target.timeout_s, limits=limits
    ) as client:
        call = target.encode(await _metadata(client, target))
        await _probe(client, call)
        return [
            await measure_level(load, client, call, clock, m, target.batch_size, progress)
            for load in loads
        ]
