"""Edge clients on changing links, in virtual time: N cameras at F fps, each uplink following
a bandwidth trace, served by M profiled devices through the server's own router, admission,
device runners and batch policies, and the server's own client registry and mapping.

It models what `rheostat camera` does live, in the same four modes (`CameraMode`), so 64
clients on 16 devices can be studied on a laptop:

* a camera captures a frame every 1/F s (its phase drawn per client) and uploads it on its
  link, first in first out, at the trace's rate when the upload starts;
* the server learns the frame at the end of the upload; its deadline is the capture plus the
  SLO less the round trip; admission drops what cannot make it, as live;
* the answer reaches the client half a round trip after the batch ends; the client then
  records the upload in its `BandwidthEstimator` and follows the answer's instruction;
* every variant is loaded on every device, as on the live server. The server-only mode
  routes by the degrade ladder: the most accurate variant expected to meet the deadline.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rheostat.admission import Admission, RequestOptions
from rheostat.backends.profiled import ProfiledExecutor
from rheostat.batching import make_policy
from rheostat.clock import VirtualClock
from rheostat.devices.device import Device, DeviceKind
from rheostat.devices.runner import DeviceRunner, ReplicaQueue
from rheostat.devices.work import ItemResult, Outcome, Payload, PayloadKind
from rheostat.errors import RequestError
from rheostat.network.camera import (
    CameraMode,
    FrameRecord,
    VariantInfo,
    client_only_choice,
    summarize_frames,
)
from rheostat.network.clients import (
    DEFAULT_QUALITY,
    ClientRegistry,
    ClientReport,
    Instruction,
    OptionCost,
    jpeg_size,
)
from rheostat.network.estimator import BandwidthEstimator
from rheostat.network.serving import HEADROOM, SERVER_SHARE, image_options
from rheostat.network.traces import BandwidthTrace
from rheostat.plan import Plan, Replica
from rheostat.profiling import LatencyProfile
from rheostat.repository.schema import DynamicBatching
from rheostat.routing import Constraints, Router
from rheostat.stats import StatsBook

__all__ = ["SimClient", "SimVariant", "simulate_clients"]

FAMILY = "camera"
_PAYLOAD = Payload(PayloadKind.TENSOR, np.zeros(1, np.float32))


@dataclass(frozen=True)
class SimVariant:
    name: str
    accuracy: float
    input_size: int  # the shorter side of the frames it wants
    latency_s: dict[int, float]  # median batch latency on one device, by batch size
    jpeg_accuracy: dict[int, float] = field(default_factory=dict)  # by JPEG quality

    def accuracy_at(self, quality: int | None) -> float:
        """On frames sent at JPEG `quality` (None: DEFAULT_QUALITY, as every camera mode but
        rheostat's sends them); `accuracy` where not scored at that quality."""
        return self.jpeg_accuracy.get(quality or DEFAULT_QUALITY, self.accuracy)


@dataclass(frozen=True)
class SimClient:
    client_id: str
    trace: BandwidthTrace
    offset_s: float = 0.0
    fps: float = 10.0
    slo_s: float = 0.1
    bytes_per_px2: float = 0.3  # its frames' JPEG bytes per square pixel of the shorter side
    rtt_s: float = 0.0


@dataclass
class _Camera:
    spec: SimClient
    estimator: BandwidthEstimator = field(default_factory=BandwidthEstimator)
    instruction: Instruction | None = None
    link_free_s: float = 0.0


class _Server:
    """The data plane on the virtual clock, every variant on every device."""

    def __init__(
        self,
        clock: VirtualClock,
        variants: Sequence[SimVariant],
        devices: int,
        batching: DynamicBatching,
        max_batch_size: int,
        seed: int,
    ) -> None:
        self.clock = clock
        accuracy = {f"{FAMILY}.{v.name}": v.accuracy for v in variants}
        best = max(variants, key=lambda v: v.accuracy)
        replicas = frozenset(
            Replica(FAMILY, v.name, f"dev{d}") for v in variants for d in range(devices)
        )
        split = {FAMILY: {Replica(FAMILY, best.name, f"dev{d}"): 1.0 for d in range(devices)}}
        self.runners: dict[str, DeviceRunner] = {}
        self.profiles: dict[Replica, LatencyProfile] = {}
        self.router = Router(Plan(replicas, split), accuracy, balance=self._finish)
        self.admission = Admission(clock, self.router, self.runners, self.profiles, StatsBook())
        self.busy_s = 0.0
        for d in range(devices):
            name = f"dev{d}"
            executor = ProfiledExecutor(
                clock, {}, seed=seed * 1_000_003 + zlib.crc32(name.encode())
            )
            runner = DeviceRunner(
                Device(name, DeviceKind.CPU, (0,)), clock, executor, lambda i: None
            )
            runner.on_batch = self._on_batch
            for v in variants:
                key = f"{FAMILY}.{v.name}"
                profile = LatencyProfile(v.latency_s)
                executor.add_variant(key, profile)
                self.profiles[Replica(FAMILY, v.name, name)] = profile
                runner.add_replica(
                    ReplicaQueue(key, make_policy(batching, max_batch_size), profile,
                                 max_batch_size, 100_000)
                )  # fmt: skip
            self.runners[name] = runner

    def _on_batch(self, key: str, size: int, compute_s: float) -> None:
        self.busy_s += compute_s

    def _finish(self, replica: Replica) -> float:
        return self.runners[replica.device].expected_finish_s(replica.key)


def _option_costs(variants: Sequence[SimVariant]) -> list[OptionCost]:
    return [
        option
        for v in variants
        for option in image_options(
            v.name, v.input_size, v.accuracy, v.jpeg_accuracy, [LatencyProfile(v.latency_s)]
        )
    ]


class _Run:
    """One simulated run (see the module notes)."""

    def __init__(
        self,
        variants: Sequence[SimVariant],
        devices: int,
        mode: CameraMode,
        static_variant: str | None,
        seconds: float,
        server: _Server,
    ) -> None:
        self.clock = server.clock
        self.server = server
        self.mode, self.static_variant, self.seconds = mode, static_variant, seconds
        self.by_name = {v.name: v for v in variants}
        costs = _option_costs(variants)
        self.registry = ClientRegistry(
            lambda family: costs, lambda family: devices * (1 - HEADROOM)
        )
        latency = {c.variant: c.latency_s for c in costs}  # a variant's options share it
        self.infos = [
            VariantInfo(v.name, v.accuracy, v.input_size, latency[v.name], v.jpeg_accuracy)
            for v in variants
        ]
        self.smallest = min(v.input_size for v in variants)
        self.largest = max(v.input_size for v in variants)
        self.records: list[FrameRecord] = []

    def choose(self, camera: _Camera, now: float) -> tuple[str | None, int, int | None]:
        """(pinned variant or None, input size, JPEG quality) of the next frame."""
        if self.mode is CameraMode.ADAPTIVE:
            told = camera.instruction
            if told is None:
                return None, self.smallest, None
            return None, told.input_size, told.jpeg_quality
        if self.mode is CameraMode.STATIC and self.static_variant is not None:
            return self.static_variant, self.by_name[self.static_variant].input_size, None
        if self.mode is CameraMode.CLIENT:
            pick, quality = client_only_choice(camera.estimator, camera.spec.slo_s, now, self.infos)
            return pick.name, pick.input_size, quality
        return None, self.largest, None

    def capture(self, camera: _Camera, captured: float) -> None:
        spec, now = camera.spec, self.clock.now()
        pinned, size, quality = self.choose(camera, now)
        share = jpeg_size(quality or DEFAULT_QUALITY)
        nbytes = max(round(spec.bytes_per_px2 * size**2 * share), 1)
        start = max(now, camera.link_free_s)
        upload = nbytes * 8 / (max(spec.trace.at(start, spec.offset_s), 0.05) * 1e6)
        camera.link_free_s = start + upload
        frame = _Frame(camera, captured, pinned, size, nbytes, upload, quality)
        self.clock.call_at(start + upload + spec.rtt_s / 2, functools.partial(self.arrived, frame))
        following = captured + 1 / spec.fps
        if following < self.seconds:
            self.clock.call_at(following, functools.partial(self.capture, camera, following))

    def arrived(self, frame: _Frame) -> None:
        spec, now = frame.camera.spec, self.clock.now()
        prefer = None
        if self.mode is CameraMode.ADAPTIVE:
            report = ClientReport(
                spec.client_id, spec.slo_s, spec.fps,
                frame.camera.estimator.conservative_mbps(now), spec.rtt_s, frame.nbytes,
                frame.size, frame.quality,
            )  # fmt: skip
            frame.instruction = self.registry.report(FAMILY, report, now)
            prefer = frame.instruction.variant
        deadline = frame.captured + spec.slo_s * SERVER_SHARE - spec.rtt_s / 2
        done = functools.partial(self.answered, frame)
        admission = self.server.admission
        try:
            constraints = Constraints(variant=frame.pinned, prefer=prefer)
            candidates = admission.candidates(FAMILY, constraints, now, deadline)
            admission.admit(FAMILY, candidates, [_PAYLOAD], [done], RequestOptions(), now,
                            deadline)  # fmt: skip
        except RequestError as error:
            done(error)

    def answered(self, frame: _Frame, outcome: Outcome) -> None:
        spec = frame.camera.spec
        now = self.clock.now()
        back = now + spec.rtt_s / 2
        e2e = back - frame.captured
        if self.mode is CameraMode.ADAPTIVE:
            deadline = frame.captured + spec.slo_s * SERVER_SHARE - spec.rtt_s / 2
            met = isinstance(outcome, ItemResult) and outcome.finished_s <= deadline + 1e-9
            self.registry.outcome(FAMILY, met, now)
        if isinstance(outcome, ItemResult):
            variant = outcome.variant.partition(".")[2]
            record = FrameRecord(
                spec.client_id, frame.captured, 200, e2e, e2e <= spec.slo_s + 1e-9, variant,
                self.by_name[variant].accuracy_at(frame.quality), frame.size, frame.nbytes,
                frame.upload_s * 1e3, outcome.queue_s * 1e3, outcome.compute_s * 1e3,
                frame.quality or DEFAULT_QUALITY,
            )  # fmt: skip
        else:
            record = FrameRecord(
                spec.client_id, frame.captured, outcome.http_status, e2e, False, "", 0.0,
                frame.size, frame.nbytes, frame.upload_s * 1e3,
                jpeg_quality=frame.quality or DEFAULT_QUALITY,
            )  # fmt: skip
        self.records.append(record)
        frame.camera.estimator.record(frame.nbytes, frame.upload_s + spec.rtt_s, back)
        if frame.instruction is not None:
            frame.camera.instruction = frame.instruction


@dataclass
class _Frame:
    camera: _Camera
    captured: float
    pinned: str | None
    size: int
    nbytes: int
    upload_s: float
    quality: int | None  # the JPEG quality it was sent at (None: 85)
    instruction: Instruction | None = None


def simulate_clients(
    clients: Sequence[SimClient],
    variants: Sequence[SimVariant],
    devices: int,
    mode: CameraMode,
    *,
    seconds: float,
    static_variant: str | None = None,
    batching: DynamicBatching | None = None,
    max_batch_size: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the cameras for `seconds` of virtual time; return `summarize_frames`' figures plus
    the device utilization and the share of frames each variant served."""
    if (mode is CameraMode.STATIC) != (static_variant is not None):
        raise ValueError(f"mode {mode.value!r}: a variant goes with, and only with, 'static'")
    names = {v.name for v in variants}
    if static_variant is not None and static_variant not in names:
        raise ValueError(f"variant {static_variant!r} is not one of {sorted(names)}")
    if devices < 1 or seconds <= 0 or not clients:
        raise ValueError(f"devices {devices} and seconds {seconds} must be > 0, clients given")
    clock = VirtualClock()
    server = _Server(clock, variants, devices, batching or DynamicBatching(), max_batch_size, seed)
    run = _Run(variants, devices, mode, static_variant, seconds, server)
    rng = np.random.default_rng(seed)
    for spec in clients:
        phase = float(rng.uniform(0, 1 / spec.fps))
        clock.call_at(phase, functools.partial(run.capture, _Camera(spec), phase))
    while clock.step():
        pass
    summary = summarize_frames(run.records, min(c.slo_s for c in clients))
    served: dict[str, int] = {}
    for r in run.records:
        if r.status == 200:
            served[r.variant] = served.get(r.variant, 0) + 1
    total = max(sum(served.values()), 1)
    summary["variants"] = {k: round(n / total, 4) for k, n in sorted(served.items())}
    summary["utilization"] = server.busy_s / (devices * max(clock.now(), seconds))
    summary["remaps"] = run.registry.remaps
    return summary
