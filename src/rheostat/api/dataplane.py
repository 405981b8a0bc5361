"""From a decoded OIP request to engine work, and from engine outcomes to a response.

Validation against the model lives here: which inputs a family or a pinned variant accepts,
their datatypes and shapes, request parameters (`priority`, `timeout` as Triton defines
them; rheostat's `slo_ms`, `min_accuracy`, `max_energy_j`, `app`) and requested outputs.
Every failure is an `InvalidRequestError` (400) or `PayloadTooLargeError` (413) naming the
offending value and what was expected.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from rheostat.api.codec import InferRequest, InferResponse, InputTensor, OutputTensor
from rheostat.apps import AppPolicy
from rheostat.devices.work import Payload, PayloadKind
from rheostat.engine import InferOutcome, RequestOptions
from rheostat.errors import InvalidRequestError, PayloadTooLargeError
from rheostat.network.clients import ClientReport
from rheostat.repository.loader import Family
from rheostat.repository.schema import InputKind, TensorSpec

__all__ = [
    "IMAGE_INPUT",
    "AcceptedInput",
    "accepted_inputs",
    "binary_outputs",
    "build_response",
    "check_outputs",
    "to_options",
    "to_payloads",
]

IMAGE_INPUT = "image"


@dataclass(frozen=True)
class AcceptedInput:
    name: str
    datatype: str
    shape: tuple[int, ...]  # including the batch dimension (-1)


def accepted_inputs(family: Family, variant: str | None) -> list[AcceptedInput]:
    """What the endpoint of `family` (or of one pinned variant) takes."""
    config = family.config
    accepted = []
    if config.input_kind is InputKind.IMAGE:
        accepted.append(AcceptedInput(IMAGE_INPUT, "BYTES", (-1,)))
        accepted.append(AcceptedInput(IMAGE_INPUT, "UINT8", (-1, -1, -1, 3)))
    if variant is not None or config.input_kind is InputKind.TENSOR:
        spec = config.variants[variant or next(iter(config.variants))].input
        accepted.append(AcceptedInput(spec.name, spec.datatype, (-1, *spec.dims)))
    return accepted


def _describe(accepted: list[AcceptedInput]) -> str:
    return " or ".join(f"{a.name} {a.datatype} {list(a.shape)}" for a in accepted)


def to_payloads(
    family: Family, variant: str | None, request: InferRequest, max_image_pixels: int
) -> list[Payload]:
    """The request's inputs as one payload per batch row."""
    accepted = accepted_inputs(family, variant)
    if len(request.inputs) != 1:
        names = [t.name for t in request.inputs]
        raise InvalidRequestError(
            f"expected exactly one input ({_describe(accepted)}), got {len(names)}: {names}"
        )
    tensor = request.inputs[0]
    if tensor.name == IMAGE_INPUT and family.config.input_kind is InputKind.IMAGE:
        return _image_payloads(tensor, max_image_pixels)
    config_variant = family.config.variants[variant or next(iter(family.config.variants))]
    if tensor.name != config_variant.input.name or tensor.name == IMAGE_INPUT:
        raise InvalidRequestError(
            f"unknown input {tensor.name!r} for {_model_name(family, variant)}; expected "
            f"{_describe(accepted)}"
        )
    return _tensor_payloads(tensor, config_variant.input, _model_name(family, variant))


def _model_name(family: Family, variant: str | None) -> str:
    return family.name if variant is None else f"{family.name}.{variant}"


def _tensor_payloads(tensor: InputTensor, spec: TensorSpec, model: str) -> list[Payload]:
    if tensor.datatype != spec.datatype:
        raise InvalidRequestError(
            f"input {tensor.name!r} of {model} has datatype {tensor.datatype}; expected "
            f"{spec.datatype}"
        )
    expected = (-1, *spec.dims)
    shape = tensor.shape
    if len(shape) != len(expected) or any(
        e not in (-1, s) for s, e in zip(shape[1:], expected[1:], strict=True)
    ):
        raise InvalidRequestError(
            f"input {tensor.name!r} of {model} has shape {list(shape)}; expected "
            f"{list(expected)} (-1: any size, the first is the batch)"
        )
    if shape[0] < 1:
        raise InvalidRequestError(f"input {tensor.name!r} has an empty batch (shape {list(shape)})")
    return [Payload(PayloadKind.TENSOR, row) for row in tensor.data]


def _image_payloads(tensor: InputTensor, max_pixels: int) -> list[Payload]:
    if tensor.datatype == "BYTES":
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidRequestError(
                f"input 'image' BYTES has shape {list(tensor.shape)}; expected [N] or [N, 1] "
                "encoded images (JPEG/PNG)"
            )
        items = [bytes(b) for b in tensor.data.reshape(-1)]
        for index, data in enumerate(items):
            _check_encoded(index, data, max_pixels)
        return [Payload(PayloadKind.ENCODED, data) for data in items]
    if tensor.datatype == "UINT8":
        shape = tensor.shape
        if len(shape) != 4 or shape[3] != 3 or 0 in shape:
            raise InvalidRequestError(
                f"input 'image' UINT8 has shape {list(shape)}; expected [N, height, width, 3] "
                "(RGB, any size)"
            )
        if shape[1] * shape[2] > max_pixels:
            raise PayloadTooLargeError(
                f"image of {shape[1]}x{shape[2]} pixels exceeds the limit of {max_pixels} pixels"
            )
        return [Payload(PayloadKind.HWC, np.ascontiguousarray(img)) for img in tensor.data]
    raise InvalidRequestError(
        f"input 'image' has datatype {tensor.datatype}; expected BYTES (encoded JPEG/PNG) or "
        "UINT8 [N, height, width, 3]"
    )


def _check_encoded(index: int, data: bytes, max_pixels: int) -> None:
    """Read only the image header: reject garbage and oversized images before queueing."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InvalidRequestError(
            f"image {index} ({len(data)} bytes) is not a decodable image; expected JPEG or PNG "
            "bytes"
        ) from None
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            f"image {index} is {width}x{height} pixels, over the limit of {max_pixels} pixels"
        )


def _number(params: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise InvalidRequestError(f"parameter {key}={value!r} must be a number in [{lo}, {hi}]")
    return float(value)


def to_options(
    request: InferRequest, family: Family, apps: Mapping[str, AppPolicy] | None = None
) -> RequestOptions:
    """Request parameters over the app's policy (request values win)."""
    params = request.parameters
    policy = _app_policy(params.get("app", ""), family, apps or {})
    priority = _number(params, "priority", 0, 2**31)
    if priority is not None and priority != int(priority):
        raise InvalidRequestError(f"parameter priority={params['priority']!r} must be an integer")
    timeouts = []
    if (timeout_us := _number(params, "timeout", 1, 3.6e9)) is not None:
        timeouts.append(timeout_us / 1e6)  # Triton: microseconds
    if (slo_ms := _number(params, "slo_ms", 1e-3, 3.6e6)) is not None:
        timeouts.append(slo_ms / 1e3)
    elif policy is not None and policy.slo_ms is not None:
        timeouts.append(policy.slo_ms / 1e3)
    min_accuracy = _number(params, "min_accuracy", 0.0, 1.0)
    if min_accuracy is None and policy is not None:
        min_accuracy = policy.min_accuracy
    if priority is None and policy is not None:
        priority = policy.priority
    max_energy_j = _number(params, "max_energy_j", 1e-12, 1e6)
    if max_energy_j is None and policy is not None:
        max_energy_j = policy.max_energy_j
    return RequestOptions(
        timeout_s=min(timeouts) if timeouts else None,
        priority=int(priority or 0),
        min_accuracy=min_accuracy or 0.0,
        app=policy.name if policy is not None else "",
        max_share=policy.max_share if policy is not None else 1.0,
        max_energy_j=max_energy_j,
    )


def client_report(request: InferRequest, body_bytes: int) -> ClientReport | None:
    """What an edge client's request says about it (`rheostat.client` sends these), or None
    for a request without `client_id` and `e2e_slo_ms`."""
    params = request.parameters
    client_id = params.get("client_id")
    slo_ms = _number(params, "e2e_slo_ms", 1.0, 3.6e6)
    if client_id is None or slo_ms is None:
        return None
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 128:
        raise InvalidRequestError(
            f"parameter client_id={client_id!r} must be a string of 1 to 128 characters"
        )
    frame_px = _number(params, "frame_px", 1, 100_000)
    if frame_px is not None and frame_px != int(frame_px):
        raise InvalidRequestError(f"parameter frame_px={params['frame_px']!r} must be an integer")
    quality = _number(params, "jpeg_quality", 1, 100)
    if quality is not None and quality != int(quality):
        raise InvalidRequestError(
            f"parameter jpeg_quality={params['jpeg_quality']!r} must be an integer"
        )
    return ClientReport(
        client_id=client_id,
        slo_s=slo_ms / 1e3,
        fps=_number(params, "fps", 1e-3, 1000.0) or 1.0,
        bandwidth_mbps=_number(params, "bandwidth_mbps", 1e-3, 1e5),
        rtt_s=(_number(params, "rtt_ms", 0.0, 1e5) or 0.0) / 1e3,
        body_bytes=body_bytes,
        frame_px=int(frame_px) if frame_px is not None else None,
        jpeg_quality=int(quality) if quality is not None else None,
    )


def _app_policy(app: object, family: Family, apps: Mapping[str, AppPolicy]) -> AppPolicy | None:
    if not isinstance(app, str):
        raise InvalidRequestError(f"parameter app={app!r} must be a string")
    if not app:
        return None
    policy = apps.get(app)
    if policy is None:
        raise InvalidRequestError(f"unknown app {app!r}; known apps: {sorted(apps)}")
    if policy.family is not None and policy.family != family.name:
        raise InvalidRequestError(
            f"app {app!r} may only use family {policy.family!r}, not {family.name!r}"
        )
    return policy


def check_outputs(family: Family, request: InferRequest) -> None:
    output = family.config.output.name
    for requested in request.outputs:
        if requested.name != output:
            raise InvalidRequestError(
                f"unknown output {requested.name!r} for {family.name}; it has {output!r}"
            )
        if requested.classification < 0:
            raise InvalidRequestError(f"classification={requested.classification} must be >= 0")


def _classification(scores: np.ndarray, k: int, labels: tuple[str, ...]) -> np.ndarray:
    """Triton's classification extension: 'score:index[:label]' for the top k classes."""
    k = min(k, scores.shape[-1])
    top = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    rows = []
    for row_scores, row_top in zip(scores, top, strict=True):
        row = []
        for index in row_top:
            label = f":{labels[index]}" if index < len(labels) else ""
            row.append(f"{row_scores[index]:f}:{index}{label}".encode())
        rows.append(row)
    out = np.empty((len(rows), k), dtype=object)
    out[:] = rows
    return out


def _accuracy(family: Family, request: InferRequest, outcome: InferOutcome) -> float:
    """The variant's accuracy on this request's input: at the JPEG quality an edge client
    says it sent, where the variant was scored at that quality."""
    quality = request.parameters.get("jpeg_quality")
    variant = family.config.variants.get(outcome.variant)
    if isinstance(quality, int | float) and not isinstance(quality, bool) and variant:
        return variant.jpeg_accuracy.get(int(quality), outcome.accuracy)
    return outcome.accuracy


def build_response(
    model_name: str, family: Family, request: InferRequest, outcome: InferOutcome
) -> InferResponse:
    data = np.stack([r.output for r in outcome.results])
    spec = family.config.output
    requested = request.outputs or ()
    classes = next((o.classification for o in requested if o.classification), 0)
    if classes:
        output = OutputTensor(
            spec.name, "BYTES", _classification(data, classes, family.config.labels)
        )
    else:
        output = OutputTensor(spec.name, spec.datatype, data.astype(spec.numpy_dtype, copy=False))
    finished = max(r.finished_s for r in outcome.results)
    params: dict[str, Any] = {
        "variant": f"{outcome.family}.{outcome.variant}",
        "accuracy": round(_accuracy(family, request, outcome), 6),
        "device": outcome.results[0].device,
        "queue_ms": round(max(r.queue_s for r in outcome.results) * 1e3, 3),
        "compute_ms": round(max(r.compute_s for r in outcome.results) * 1e3, 3),
        "total_ms": round((finished - outcome.arrival_s) * 1e3, 3),
        "slo_ms": round((outcome.deadline_s - outcome.arrival_s) * 1e3, 3),
        "slo_met": bool(finished <= outcome.deadline_s),
        "energy_j": float(f"{outcome.energy_j:.4g}"),
    }
    exits = [r.stage for r in outcome.results]
    if any(exits):  # a staged variant: the stage (exit) that answered each row
        # OIP parameters are scalars: one row's exit, or every row's as "1,3,1"
        params["exit"] = exits[0] if len(exits) == 1 else ",".join(map(str, exits))
    return InferResponse(
        model_name=model_name,
        model_version=str(outcome.version),
        id=request.id,
        outputs=(output,),
        parameters=params,
    )


def binary_outputs(request: InferRequest, response: InferResponse) -> set[str]:
    names = set()
    for output in response.outputs:
        asked = next((o for o in request.outputs if o.name == output.name), None)
        flag = asked.binary_data if asked is not None else None
        if flag if flag is not None else request.binary_data_output:
            names.add(output.name)
    return names
