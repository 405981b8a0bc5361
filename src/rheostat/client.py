"""`rheostat.client`: an Open Inference Protocol client for edge devices on changing links.

It sends a frame as an encoded image (JPEG/PNG bytes, the binary tensor extension) or as
a tensor, times the request by its own clock, and tells its upload apart from the rest with
the times the server reports by the server's own clock (`server_ms`: from the start of the
request's handling to the answer, `receive_ms` of it spent receiving the body). No clock is
shared. Uploads feed a `BandwidthEstimator`; each request carries the client's id, its
bandwidth estimate and frame rate, and a server-side deadline (`slo_ms`) of what is left of
the end-to-end SLO once the expected upload is spent, so the server drops a frame that can
no longer make it instead of answering it late. With an end-to-end SLO the server maps the
client to a variant, an input size and a JPEG quality (`rheostat.network.clients`) and says
in each answer what to send next (`input_size`: the frame's shorter side, `jpeg_quality`);
`infer_frame` follows both.

    client = EdgeClient("http://server:8000", "efficientnet_lite", slo_ms=100, fps=10)
    result = client.infer_frame(rgb_array)  # at the server's input_size and jpeg_quality
    result.parameters["variant"], result.end_to_end_s, client.bandwidth_mbps

`AsyncEdgeClient` is the same on asyncio.
"""

from __future__ import annotations

import io
import json
import math
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image

from rheostat.clock import Stopwatch, monotonic_s
from rheostat.network.clients import DEFAULT_QUALITY
from rheostat.network.estimator import BandwidthEstimator
from rheostat.network.serving import SERVER_SHARE

__all__ = ["AsyncEdgeClient", "EdgeClient", "InferResult", "RequestFailed", "encode_frame"]

HEADER_LENGTH = "Inference-Header-Content-Length"


class RequestFailed(RuntimeError):
    """The server answered with an error: `status` and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InferResult:
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any]
    end_to_end_s: float  # send to answer, by this client's clock
    upload_s: float  # this request's upload, as measured
    body_bytes: int


@dataclass
class _State:
    """What both clients share: identity, policy, estimate, the server's instructions."""

    model: str
    slo_ms: float | None
    fps: float | None
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    estimator: BandwidthEstimator = field(default_factory=BandwidthEstimator)
    mapped: bool = True  # report the end-to-end SLO, so the server maps this client
    outputs: list[dict[str, Any]] | None = None  # OIP requested outputs (None: all, raw)
    input_size: int | None = None
    jpeg_quality: int | None = None  # as the server said (None: DEFAULT_QUALITY)
    variant: str | None = None  # the variant the server mapped this client to
    started: float = field(default_factory=monotonic_s)

    def now(self) -> float:
        return monotonic_s() - self.started

    def parameters(
        self, body_bytes: int, frame_px: int | None, quality: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"client_id": self.client_id}
        estimate = self.estimator.conservative_mbps(self.now())  # what deadlines plan with
        if estimate is not None:
            params["bandwidth_mbps"] = round(estimate, 3)
        if math.isfinite(self.estimator.rtt_floor_s):
            params["rtt_ms"] = round(self.estimator.rtt_floor_s * 1e3, 3)
        if frame_px is not None:
            params["frame_px"] = frame_px
        if quality is not None:
            params["jpeg_quality"] = quality
        if self.fps is not None:
            params["fps"] = self.fps
        if self.slo_ms is not None:
            if self.mapped:
                params["e2e_slo_ms"] = self.slo_ms
            upload = self.estimator.upload_s(body_bytes, self.now()) or 0.0
            # what the server may use: its share of the SLO, less the upload to come
            params["slo_ms"] = max(self.slo_ms * SERVER_SHARE - upload * 1e3, 1.0)
        return params

    def body(
        self,
        tensor: dict[str, Any],
        raw: bytes | None,
        frame_px: int | None = None,
        quality: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        size = len(raw) if raw is not None else 0
        request: dict[str, Any] = {
            "inputs": [tensor],
            "parameters": self.parameters(size + 200, frame_px, quality),
        }
        if self.outputs is not None:
            request["outputs"] = self.outputs
        header = json.dumps(request, separators=(",", ":")).encode()
        if raw is None:
            return header, {"content-type": "application/json"}
        return header + raw, {
            "content-type": "application/octet-stream",
            HEADER_LENGTH: str(len(header)),
        }

    def finish(self, response: httpx.Response, elapsed_s: float, body_bytes: int) -> InferResult:
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise RequestFailed(response.status_code, message)
        data = response.json()
        params = data.get("parameters", {})
        server_s = float(params.get("server_ms", 0.0)) / 1e3
        receive_s = float(params.get("receive_ms", 0.0)) / 1e3
        # the upload: what the server spent receiving, plus what it did not see (before the
        # first byte reached it), which is the whole time less its own
        upload_s = max(elapsed_s - (server_s - receive_s), 1e-6)
        self.estimator.record(body_bytes, upload_s, self.now())
        if isinstance(params.get("input_size"), int):
            self.input_size = params["input_size"]
        if isinstance(params.get("client_variant"), str):  # an instruction: follow all of it
            self.variant = params["client_variant"] or None
            quality = params.get("jpeg_quality")
            self.jpeg_quality = quality if isinstance(quality, int) else None
        outputs = {
            o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in data.get("outputs", [])
        }
        return InferResult(outputs, params, elapsed_s, upload_s, body_bytes)


def encode_frame(
    frame: np.ndarray | Image.Image, size: int | None, quality: int = DEFAULT_QUALITY
) -> tuple[bytes, int]:
    """A camera frame as JPEG bytes, its shorter side scaled down to `size` (None or a larger
    size: as it is; frames are never scaled up); returns the bytes and that shorter side."""
    image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame))
    image = image.convert("RGB")
    shorter = min(image.size)
    if size is not None and 0 < size < shorter:
        scale = size / shorter
        width, height = (max(round(side * scale), 1) for side in image.size)
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        shorter = min(image.size)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue(), shorter


def _image_tensor(image: bytes) -> tuple[dict[str, Any], bytes]:
    raw = struct.pack("<I", len(image)) + image  # a BYTES element: length, then the bytes
    return (
        {"name": "image", "shape": [1], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(raw)}},
        raw,
    )  # fmt: skip


def _array_tensor(name: str, array: np.ndarray) -> tuple[dict[str, Any], bytes]:
    types = {np.float32: "FP32", np.uint8: "UINT8", np.int64: "INT64", np.float16: "FP16"}
    datatype = types.get(array.dtype.type)
    if datatype is None:
        raise ValueError(f"array dtype {array.dtype}: expected one of float32, uint8, int64")
    raw = np.ascontiguousarray(array).tobytes()
    return (
        {"name": name, "shape": list(array.shape), "datatype": datatype,
         "parameters": {"binary_data_size": len(raw)}},
        raw,
    )  # fmt: skip


class _Client:
    """What the sync and asyncio clients share: their state and what it tells."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        slo_ms: float | None = None,
        fps: float | None = None,
        client_id: str | None = None,
        mapped: bool = True,
        timeout_s: float = 30.0,
    ) -> None:
        """`mapped=False`: keep the server-side deadline (`slo_ms`) but do not ask to be
        mapped to a variant and input size (the baselines do so)."""
        self.state = _State(model, slo_ms, fps, mapped=mapped)
        if client_id:
            self.state.client_id = client_id
        self._connect(url, timeout_s)

    def _connect(self, url: str, timeout_s: float) -> None:
        raise NotImplementedError

    @property
    def bandwidth_mbps(self) -> float | None:
        return self.state.estimator.estimate_mbps(self.state.now())

    @property
    def input_size(self) -> int | None:
        return self.state.input_size

    @property
    def jpeg_quality(self) -> int:
        """The quality `infer_frame` encodes at: the server's word, or DEFAULT_QUALITY."""
        return self.state.jpeg_quality or DEFAULT_QUALITY

    def _encoded(
        self, frame: np.ndarray | Image.Image, quality: int | None
    ) -> tuple[bytes, int, int]:
        """`frame` as JPEG at the server's input size and `quality` (None: the server's);
        returns the bytes, the frame's shorter side and the quality."""
        q = quality or self.jpeg_quality
        return (*encode_frame(frame, self.input_size, q), q)

    @property
    def _path(self) -> str:
        return f"/v2/models/{self.state.model}/infer"


class EdgeClient(_Client):
    def _connect(self, url: str, timeout_s: float) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout_s)

    def infer_image(
        self, image: bytes, frame_px: int | None = None, quality: int | None = None
    ) -> InferResult:
        """One encoded frame (JPEG or PNG bytes); `frame_px` (its shorter side) and
        `quality` (its JPEG quality) let the server learn how many bytes this client's
        frames take per size."""
        return self._send(*_image_tensor(image), frame_px, quality)

    def infer_frame(
        self, frame: np.ndarray | Image.Image, quality: int | None = None
    ) -> InferResult:
        """One camera frame (an RGB array or PIL image), sent as JPEG at the input size and
        quality the server last asked for (before the first answer: as it is, at
        DEFAULT_QUALITY); `quality` overrides the server's."""
        return self.infer_image(*self._encoded(frame, quality))

    def infer_tensor(self, array: np.ndarray, name: str = "input") -> InferResult:
        """One tensor, batch dimension included."""
        return self._send(*_array_tensor(name, array))

    def _send(
        self,
        tensor: dict[str, Any],
        raw: bytes,
        frame_px: int | None = None,
        quality: int | None = None,
    ) -> InferResult:
        body, headers = self.state.body(tensor, raw, frame_px, quality)
        with Stopwatch() as watch:
            response = self.http.post(self._path, content=body, headers=headers)
        return self.state.finish(response, watch.elapsed_s, len(body))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEdgeClient(_Client):
    def _connect(self, url: str, timeout_s: float) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout_s)

    async def infer_image(
        self, image: bytes, frame_px: int | None = None, quality: int | None = None
    ) -> InferResult:
        return await self._send(*_image_tensor(image), frame_px, quality)

    async def infer_frame(
        self, frame: np.ndarray | Image.Image, quality: int | None = None
    ) -> InferResult:
        return await self.infer_image(*self._encoded(frame, quality))

    async def infer_tensor(self, array: np.ndarray, name: str = "input") -> InferResult:
        return await self._send(*_array_tensor(name, array))

    async def _send(
        self,
        tensor: dict[str, Any],
        raw: bytes,
        frame_px: int | None = None,
        quality: int | None = None,
    ) -> InferResult:
        body, headers = self.state.body(tensor, raw, frame_px, quality)
        with Stopwatch() as watch:
            response = await self.http.post(self._path, content=body, headers=headers)
        return self.state.finish(response, watch.elapsed_s, len(body))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncEdgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
