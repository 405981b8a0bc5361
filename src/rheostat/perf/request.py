"""The one request a run sends: inputs built from the model metadata, encoded once."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from rheostat.api.codec import datatype_to_numpy, encode_infer_request

__all__ = [
    "IMAGE_SIDE",
    "InferCall",
    "InputData",
    "InputSpec",
    "Target",
    "concrete_shape",
    "make_tensor",
    "parse_request_parameter",
    "parse_shape",
    "read_inputs",
]

IMAGE_SIDE = 224  # variable height/width of a UINT8 image input


class InputData(StrEnum):
    """What the generated input tensors hold."""

    RANDOM = "random"
    ZERO = "zero"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """An input as the model metadata declares it; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def read_inputs(metadata: Mapping[str, Any], only: Sequence[str] = ()) -> list[InputSpec]:
    """One spec per input name, restricted to `only` when given.

    Where a server lists alternatives under one name (rheostat: an image as BYTES or as
    UINT8), the first numeric one wins: random bytes are rarely a valid encoded image.
    """
    chosen: dict[str, InputSpec] = {}
    for raw in metadata.get("inputs") or []:
        spec = _input_spec(raw)
        held = chosen.get(spec.name)
        if held is None or (held.datatype == "BYTES" and spec.datatype != "BYTES"):
            chosen[spec.name] = spec
    if not chosen:
        raise ValueError("the model metadata lists no inputs")
    unknown = sorted(set(only) - set(chosen))
    if unknown:
        raise ValueError(f"--input {unknown[0]!r}: the model's inputs are {sorted(chosen)}")
    return [spec for name, spec in chosen.items() if not only or name in only]


def _input_spec(raw: Any) -> InputSpec:
    try:
        return InputSpec(
            str(raw["name"]), str(raw["datatype"]), tuple(int(d) for d in raw["shape"])
        )
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"model metadata input {raw!r}: expected an object with name, datatype and shape"
        ) from None


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME:D1,D2,...` (dimensions without the batch one, as perf_analyzer's --shape)."""
    name, _, dims = text.rpartition(":")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not name or not shape or min(shape) < 1:
        raise ValueError(f"--shape {text!r}: expected NAME:D1,D2,... with positive dimensions")
    return name, shape


def _flag(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(text)
    return text == "true"


_PARAMETER_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "bool": _flag, "string": str,
}  # fmt: skip


def parse_request_parameter(text: str) -> tuple[str, Any]:
    """`NAME:VALUE:TYPE` (perf_analyzer's --request-parameter; TYPE int, float, bool or
    string), e.g. `slo_ms:200:int`, sent in the request's `parameters`."""
    name, _, rest = text.partition(":")
    value, _, kind = rest.rpartition(":")
    convert = _PARAMETER_TYPES.get(kind)
    with contextlib.suppress(ValueError):
        if name and convert is not None:
            return name, convert(value)
    raise ValueError(
        f"--request-parameter {text!r}: expected NAME:VALUE:TYPE with TYPE one of "
        f"{', '.join(_PARAMETER_TYPES)}, e.g. slo_ms:200:int"
    )


def concrete_shape(
    spec: InputSpec, batch_size: int, overrides: Mapping[str, tuple[int, ...]]
) -> tuple[int, ...]:
    """The shape to send: the leading -1 is the batch, other -1s come from `overrides`
    (a UINT8 HWC/CHW image gets 224x224 without one)."""
    batched = bool(spec.shape) and spec.shape[0] == -1
    dims = spec.shape[1:] if batched else spec.shape
    if not batched and batch_size != 1:
        raise ValueError(
            f"--batch-size {batch_size}: input {spec.name!r} of shape {list(spec.shape)} has "
            "no batch dimension (-1 first); use --batch-size 1"
        )
    dims = _fixed_dims(spec, dims, overrides.get(spec.name))
    return (batch_size, *dims) if batched else dims


def _fixed_dims(
    spec: InputSpec, dims: tuple[int, ...], given: tuple[int, ...] | None
) -> tuple[int, ...]:
    if given is not None:
        same_rank = len(given) == len(dims)
        if not same_rank or any(d not in (-1, g) for d, g in zip(dims, given, strict=True)):
            raise ValueError(
                f"--shape {spec.name}:{','.join(map(str, given))} does not fit the declared "
                f"dimensions {list(dims)}"
            )
        return given
    if -1 not in dims:
        return dims
    if spec.datatype != "UINT8" or len(dims) != 3:
        raise ValueError(
            f"input {spec.name!r} has variable dimensions {list(spec.shape)}; give them "
            f"with --shape {spec.name}:D1,D2,..."
        )
    return tuple(IMAGE_SIDE if d == -1 else d for d in dims)


def make_tensor(
    datatype: str, shape: tuple[int, ...], data: InputData, rng: np.random.Generator
) -> npt.NDArray[Any]:
    """Random data fit for common models (floats in [0, 16) as digits' pixels, any UINT8
    byte, small integers), or zeros."""
    if datatype == "BYTES":
        size = math.prod(shape)
        items = [rng.bytes(16) if data is InputData.RANDOM else b"" for _ in range(size)]
        array = np.empty(size, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = datatype_to_numpy(datatype)
    if data is InputData.ZERO:
        return np.zeros(shape, dtype)
    if dtype.kind == "f":
        return rng.uniform(0, 16, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.integers(0, 256 if dtype == np.uint8 else 16, shape, dtype=dtype)


@dataclass(frozen=True, slots=True)
class InferCall:
    """One encoded infer request, sent unchanged for the whole run."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Target:
    """What to measure and how each request looks."""

    url: str
    model: str
    binary: bool = True  # the binary tensor extension both ways, else JSON
    batch_size: int = 1
    input_data: InputData = InputData.RANDOM
    shapes: tuple[str, ...] = ()  # --shape NAME:D1,D2 overrides
    inputs: tuple[str, ...] = ()  # send only these inputs (default: every input name)
    timeout_s: float = 30.0
    max_connections: int = 256  # connection pool of an open loop
    parameters: tuple[str, ...] = ()  # --request-parameter NAME:VALUE:TYPE

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: expected 1 or more")
        if self.timeout_s <= 0 or self.max_connections < 1:
            raise ValueError("--timeout-s and --max-connections must be positive")
        self.request_parameters()  # bad flags fail before any request
        for text in self.shapes:
            parse_shape(text)

    def request_parameters(self) -> dict[str, Any]:
        return dict(parse_request_parameter(text) for text in self.parameters)

    @property
    def base_url(self) -> str:
        return self.url if "://" in self.url else f"http://{self.url}"

    def encode(self, metadata: Mapping[str, Any]) -> InferCall:
        """The request for `metadata`'s inputs (ValueError naming what does not fit)."""
        overrides = dict(parse_shape(s) for s in self.shapes)
        rng = np.random.default_rng(0)
        tensors = [
            (s.name, make_tensor(s.datatype, concrete_shape(s, self.batch_size, overrides),
                                 self.input_data, rng))
            for s in read_inputs(metadata, self.inputs)
        ]  # fmt: skip
        body, headers = encode_infer_request(
            tensors,
            binary=self.binary,
            binary_data_output=self.binary,
            parameters=self.request_parameters(),
        )
        return InferCall(f"/v2/models/{self.model}/infer", body, headers)
