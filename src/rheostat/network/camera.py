"""A camera client: frames at a fixed rate to a family, under an end-to-end SLO, in one of
four modes, each frame's fate recorded. `rheostat camera` runs it (inside a shaped network
namespace in the benchmarks and tests); the simulator models the same modes.

* `adaptive` (rheostat): reports its link and SLO; sends at the input size and JPEG quality
  the server maps it to, and the server serves it with the mapped variant;
* `static`: one variant for every frame, at that variant's input size (quality 85);
* `client`: client-only adaptation: each frame's variant, size and quality is the most
  accurate whose upload, at the client's own conservative estimate, and inference fit the
  SLO (`map_clients` for this one client, blind to the server's load);
* `server`: server-only adaptation: frames at the largest input size, the variant chosen by
  the server's plan (Proteus-like), no data adaptation.

Frames are captured every 1/fps s whatever happens to earlier ones (a camera does not
wait), each sent on its own; a frame's end-to-end time runs from its capture to its answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from rheostat.client import AsyncEdgeClient, RequestFailed, encode_frame
from rheostat.clock import WallClock, monotonic_s
from rheostat.network.clients import DEFAULT_QUALITY, by_quality, frame_bytes_at
from rheostat.network.estimator import BandwidthEstimator
from rheostat.network.mapping import ClientState, Option, map_clients

__all__ = [
    "CameraMode",
    "FrameRecord",
    "VariantInfo",
    "client_only_choice",
    "family_variants",
    "run_camera",
    "summarize_frames",
]


class CameraMode(StrEnum):
    ADAPTIVE = "adaptive"
    STATIC = "static"
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True)
class VariantInfo:
    name: str
    accuracy: float
    input_size: int
    latency_s: float
    jpeg_accuracy: Mapping[int, float] = field(default_factory=dict)  # by quality, if scored


@dataclass(frozen=True)
class FrameRecord:
    client_id: str
    captured_s: float  # since the camera started
    status: int  # HTTP status; 0: no answer (connection error)
    end_to_end_s: float  # capture to answer (or to the error)
    on_time: bool
    variant: str
    accuracy: float
    frame_px: int
    frame_bytes: int
    upload_ms: float = 0.0  # as the client measured it
    queue_ms: float = 0.0  # as the server reported it
    compute_ms: float = 0.0
    jpeg_quality: int = DEFAULT_QUALITY


def family_variants(metadata: dict[str, Any]) -> list[VariantInfo]:
    """The family's image variants, from the server's model metadata."""
    variants = metadata["parameters"]["variants"]
    return [
        VariantInfo(
            name, v["accuracy"], v["input_size"], v.get("latency_ms", 0.0) / 1e3,
            {int(q): a for q, a in v.get("jpeg_accuracy", {}).items()},
        )
        for name, v in variants.items()
        if "input_size" in v
    ]  # fmt: skip


def client_only_choice(
    estimator: BandwidthEstimator, slo_s: float, now: float, variants: Sequence[VariantInfo]
) -> tuple[VariantInfo, int | None]:
    """Client-only adaptation: the most accurate variant and JPEG quality whose frame
    uploads at this client's own conservative estimate and is inferred within the SLO (the
    smallest frames until the client has an estimate). Blind to the server's load. Pure:
    the simulator calls it."""
    by_name = {v.name: v for v in variants}
    options = [
        Option(v.name, v.input_size, a, frame_bytes_at(v.input_size, q), v.latency_s,
               v.latency_s, quality=q)
        for v in variants
        for q, a in by_quality(v.accuracy, v.jpeg_accuracy).items()
    ]  # fmt: skip
    smallest = min(options, key=lambda o: o.frame_bytes)
    mbps = estimator.conservative_mbps(now)
    chosen = None
    if mbps is not None:
        rtt = 0.0 if math.isinf(estimator.rtt_floor_s) else estimator.rtt_floor_s
        me = ClientState("me", mbps, slo_s, 1.0, rtt)
        chosen = map_clients([me], options, math.inf).choice["me"]
    pick = chosen or smallest
    return by_name[pick.variant], pick.quality


class _Camera:
    """One camera's choices and records (see the module notes)."""

    def __init__(
        self,
        client: AsyncEdgeClient,
        family: str,
        frames: Sequence[np.ndarray],
        variants: Sequence[VariantInfo],
        mode: CameraMode,
        variant: str | None,
        slo_s: float,
    ) -> None:
        self.client, self.family, self.frames, self.mode, self.slo_s = (
            client, family, frames, mode, slo_s
        )  # fmt: skip
        self.variants = list(variants)
        self.by_name = {v.name: v for v in variants}
        if variant is not None and variant not in self.by_name:
            raise ValueError(f"variant {variant!r} is not one of {sorted(self.by_name)}")
        self.variant = variant
        self.smallest = min(self.variants, key=lambda v: v.input_size).input_size
        self.largest = max(self.variants, key=lambda v: v.input_size).input_size
        self.encoded: dict[tuple[int, int, int], tuple[bytes, int]] = {}
        self.records: list[FrameRecord] = []

    def choose(self) -> tuple[str, int, int]:
        """The model to ask, and the input size and JPEG quality to send this frame at."""
        if self.mode is CameraMode.ADAPTIVE:
            return self.family, self.client.input_size or self.smallest, self.client.jpeg_quality
        if self.mode is CameraMode.STATIC and self.variant is not None:
            size = self.by_name[self.variant].input_size
            return f"{self.family}.{self.variant}", size, DEFAULT_QUALITY
        if self.mode is CameraMode.CLIENT:
            state = self.client.state
            choice, quality = client_only_choice(
                state.estimator, self.slo_s, state.now(), self.variants
            )
            return f"{self.family}.{choice.name}", choice.input_size, quality or DEFAULT_QUALITY
        return self.family, self.largest, DEFAULT_QUALITY

    def frame(self, index: int, size: int, quality: int) -> tuple[bytes, int]:
        key = (index % len(self.frames), size, quality)
        if key not in self.encoded:  # a camera encodes each frame once: cache the photos
            self.encoded[key] = encode_frame(self.frames[key[0]], size, quality)
        return self.encoded[key]

    async def send(self, index: int, captured: float, started: float) -> None:
        model, size, quality = self.choose()
        data, px = self.frame(index, size, quality)
        self.client.state.model = model  # read before the request's first await
        status, served, accuracy, times = 0, "", 0.0, (0.0, 0.0, 0.0)
        try:
            result = await self.client.infer_image(data, px, quality)
            status, served = 200, str(result.parameters.get("variant", ""))
            params = result.parameters
            accuracy = float(params.get("accuracy", 0.0))
            times = (
                result.upload_s * 1e3,
                params.get("queue_ms", 0.0),
                params.get("compute_ms", 0.0),
            )
        except RequestFailed as failed:
            status = failed.status
        except httpx.HTTPError:
            status = 0
        e2e = monotonic_s() - started - captured
        self.records.append(
            FrameRecord(self.client.state.client_id, round(captured, 4), status, e2e,
                        status == 200 and e2e <= self.slo_s, served, accuracy, px, len(data),
                        *times, quality)
        )  # fmt: skip


async def run_camera(
    url: str,
    family: str,
    frames: Sequence[np.ndarray],
    *,
    mode: CameraMode,
    fps: float,
    slo_ms: float,
    seconds: float,
    variant: str | None = None,
    client_id: str | None = None,
    phase_s: float | None = None,
) -> list[FrameRecord]:
    """Send `fps` frames a second for `seconds` (cycling through `frames`); return a record
    per frame. `variant` is required by, and only by, the `static` mode. The first frame
    comes `phase_s` after the start (default: at random within the first interval)."""
    if (mode is CameraMode.STATIC) != (variant is not None):
        raise ValueError(f"mode {mode.value!r}: a variant goes with, and only with, 'static'")
    clock = WallClock()
    async with AsyncEdgeClient(
        url, family, slo_ms=slo_ms, fps=fps, client_id=client_id,
        mapped=mode is CameraMode.ADAPTIVE,
    ) as client:  # fmt: skip
        response = await client.http.get(f"/v2/models/{family}")
        response.raise_for_status()
        metadata = response.json()
        variants = family_variants(metadata)
        # a camera wants the answer's label, not 1000 logits: the classification extension
        # keeps the answer small for the server to write and the camera to read
        output = metadata["outputs"][0]["name"]
        client.state.outputs = [{"name": output, "parameters": {"classification": 1}}]
        if not variants:
            raise ValueError(f"family {family!r} has no image variants")
        camera = _Camera(client, family, frames, variants, mode, variant, slo_ms / 1e3)
        started = monotonic_s()
        tasks = []
        # cameras are not in phase with each other: the first frame comes at a random
        # instant of the first frame interval (cameras started together would otherwise
        # send their frames in bursts)
        phase = random.uniform(0, 1 / fps) if phase_s is None else phase_s
        for index in range(max(int(seconds * fps), 1)):
            captured = phase + index / fps
            delay = started + captured - monotonic_s()
            if delay > 0:
                await clock.sleep(delay)
            tasks.append(asyncio.create_task(camera.send(index, captured, started)))
        await asyncio.gather(*tasks)
    return sorted(camera.records, key=lambda r: r.captured_s)


def write_records(records: Sequence[FrameRecord], path: Path) -> None:
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))


def read_records(path: Path) -> list[FrameRecord]:
    return [FrameRecord(**json.loads(line)) for line in path.read_text().splitlines() if line]


def summarize_frames(records: Sequence[FrameRecord], slo_s: float) -> dict[str, Any]:
    """On-time ratio over all frames; end-to-end p50/p99 and mean accuracy over answers."""
    if not records:
        return {"frames": 0}
    answered = [r for r in records if r.status == 200]
    e2e = np.array([r.end_to_end_s for r in answered]) if answered else np.array([math.inf])
    return {
        "frames": len(records),
        "on_time": sum(r.on_time for r in records) / len(records),
        "answered": len(answered) / len(records),
        "dropped": sum(r.status in (429, 504) for r in records) / len(records),
        "p50_ms": float(np.percentile(e2e, 50) * 1e3),
        "p99_ms": float(np.percentile(e2e, 99) * 1e3),
        "accuracy": float(np.mean([r.accuracy for r in answered])) if answered else 0.0,
        "slo_ms": slo_s * 1e3,
        "qualities": {
            q: round(sum(r.jpeg_quality == q for r in answered) / len(answered), 4)
            for q in sorted({r.jpeg_quality for r in answered})
        },
    }
