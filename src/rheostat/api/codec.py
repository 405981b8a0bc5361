"""Wire codec for the Open Inference Protocol (KServe v2) infer endpoint.

Converts HTTP bodies to and from plain objects, in both forms the protocol allows:

* JSON: the whole body is one JSON object; tensor ``data`` is a flat row-major or nested
  array of JSON values (booleans for BOOL, integers for the integer types, numbers for the
  float types, UTF-8 strings for BYTES).
* Triton's binary tensor data extension: the HTTP header ``Inference-Header-Content-Length``
  gives the length of the JSON header at the start of the body; the rest of the body is the
  concatenated raw data of every tensor whose ``parameters.binary_data_size`` is set, in
  tensor order. Raw data is little-endian, row-major, unpadded; BOOL is one byte (0 or 1);
  each BYTES element is a little-endian uint32 length followed by that many bytes.

Server side: `decode_infer_request` and `encode_infer_response`. Client side (tests and the
client library): `encode_infer_request` and `decode_infer_response`.

Interpretations of the spec, all deliberate:

* Nested JSON data is flattened row-major and only its total element count is checked
  against the shape (as Triton does); every nesting level must be all arrays or all scalars.
* JSON integers are accepted for the float types; booleans are accepted only for BOOL,
  integers only as integers (``1.0`` is not an INT32), strings only for BYTES.
* ``"id": null`` and ``"parameters": null`` read as absent.
* Values JSON cannot carry exactly (NaN or infinite floats, BYTES elements that are not valid
  UTF-8) are always sent as binary data, even when JSON was asked for, so every tensor
  round-trips bit for bit. Clients must therefore honour ``binary_data_size`` on any output.
* Keys lifted into typed fields (``binary_data_size``, ``binary_data``, ``classification``,
  ``binary_data_output``) are removed from the ``parameters`` dicts that carry the rest.

The encoders pad a binary body's JSON header with trailing spaces (valid JSON whitespace)
to a multiple of 8 bytes, so the first binary tensor lands aligned and decodes without a copy.

Numeric arrays decoded from binary data are read-only views into the request body
(``np.frombuffer``) when the data is aligned and native-endian; otherwise they are copies.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from rheostat.errors import InvalidRequestError, PayloadTooLargeError

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH_HEADER",
    "MAX_RANK",
    "InferRequest",
    "InferResponse",
    "InputTensor",
    "OutputTensor",
    "RequestedOutput",
    "TensorData",
    "datatype_to_numpy",
    "decode_infer_request",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
    "numpy_to_datatype",
]

HEADER_LENGTH_HEADER: Final = "Inference-Header-Content-Length"
MAX_RANK: Final = 32  # numpy 1.x's limit on ndim
_MAX_VOLUME: Final = 2**48  # product of the non-zero dimensions of any shape

_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_DATATYPE_OF: Final[dict[np.dtype[Any], str]] = {dtype: name for name, dtype in _DTYPES.items()}
DATATYPES: Final[frozenset[str]] = frozenset(_DTYPES)
_DATATYPE_LIST: Final = ", ".join(sorted(DATATYPES))


def _json_types(datatype: str) -> frozenset[type]:
    """The Python types msgspec yields for JSON values valid as `datatype` elements."""
    if datatype in ("BOOL", "BYTES"):
        return frozenset({bool if datatype == "BOOL" else str})
    return frozenset({int, float}) if datatype.startswith("FP") else frozenset({int})


_JSON_TYPES: Final = {name: _json_types(name) for name in _DTYPES}
_JSON_KIND: Final[dict[type, str]] = {
    bool: "a boolean",
    int: "an integer",
    float: "a non-integer number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}
_U32: Final = struct.Struct("<I")
_OUTPUT_KEYS: Final = ("binary_data", "classification")
_FLOAT_MAX: Final = {name: float(np.finfo(_DTYPES[name]).max) for name in ("FP16", "FP32")}

TensorData = npt.NDArray[Any] | Sequence[bytes | str]
"""What the client-side encoder takes: a numeric array, or BYTES as an object array/sequence."""
_Payload = bytes | memoryview


@dataclass(frozen=True, slots=True, eq=False)
class InputTensor:
    """One decoded request input. `data` has `shape` and the datatype's dtype (BYTES: object
    array of `bytes`). `parameters` excludes ``binary_data_size``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[Any]
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An entry of the request's ``outputs``; `parameters` excludes the two lifted keys."""

    name: str
    binary_data: bool | None
    classification: int
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class InferRequest:
    """A decoded infer request. Empty `outputs` means all outputs; `parameters` excludes
    ``binary_data_output``."""

    id: str | None
    inputs: tuple[InputTensor, ...]
    outputs: tuple[RequestedOutput, ...]
    parameters: dict[str, Any]
    binary_data_output: bool


@dataclass(frozen=True, slots=True, eq=False)
class OutputTensor:
    """One response output; the shape is `data.shape` (BYTES: object array of `bytes`)."""

    name: str
    datatype: str
    data: npt.NDArray[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class InferResponse:
    """An infer response; `model_version`, `id` and empty `parameters` are omitted on the wire."""

    model_name: str
    model_version: str | None
    id: str | None
    outputs: tuple[OutputTensor, ...]
    parameters: dict[str, Any]


# ---------------------------------------------------------------------------- datatypes


def datatype_to_numpy(datatype: str) -> np.dtype[Any]:
    """The native numpy dtype of an OIP datatype (BYTES -> object); ValueError if unknown."""
    try:
        return _DTYPES[datatype]
    except KeyError:
        raise ValueError(
            f"unknown datatype {datatype!r}; expected one of {_DATATYPE_LIST}"
        ) from None


def numpy_to_datatype(dtype: npt.DTypeLike) -> str:
    """The OIP datatype of a numpy dtype of either byte order (object -> BYTES); ValueError
    for dtypes the protocol has no datatype for."""
    native = np.dtype(dtype).newbyteorder("=")
    try:
        return _DATATYPE_OF[native]
    except KeyError:
        raise ValueError(f"numpy dtype {native} has no OIP datatype") from None


# ---------------------------------------------------------------------------- small helpers


def _show(value: Any) -> str:
    """A short repr of a client-supplied value for error messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    return _JSON_KIND.get(type(value), type(value).__name__)


def _invalid(message: str) -> InvalidRequestError:
    return InvalidRequestError(message)


def _object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _invalid(f"{what} must be a JSON object, got {_kind(value)} {_show(value)}")
    return value


def _required_str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if type(value) is not str or not value:
        got = "nothing" if value is None else f"{_kind(value)} {_show(value)}"
        raise _invalid(f"{what}: '{key}' must be a non-empty string, got {got}")
    return value


def _optional_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is not None and type(value) is not str:
        raise _invalid(f"{what}: '{key}' must be a string, got {_kind(value)} {_show(value)}")
    return value


def _optional_object(obj: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = obj.get(key)
    return {} if value is None else _object(value, f"{what}: '{key}'")


def _optional_bool(params: dict[str, Any], key: str, what: str) -> bool | None:
    value = params.get(key)
    if value is not None and type(value) is not bool:
        raise _invalid(f"{what}: parameter '{key}' must be true or false, got {_show(value)}")
    return value


def _optional_count(params: dict[str, Any], key: str, what: str) -> int | None:
    value = params.get(key)
    if value is not None and (type(value) is not int or value < 0):
        raise _invalid(
            f"{what}: parameter '{key}' must be a non-negative integer, got {_show(value)}"
        )
    return value


def _without(params: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in params.items() if key not in keys}


def _check_unique(names: list[str], kind: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _invalid(f"{kind} name {name!r} appears more than once")
        seen.add(name)


# ---------------------------------------------------------------------------- body framing


def _utf8_problem(buf: memoryview) -> str:
    try:
        bytes(buf).decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{exc.reason} at byte {exc.start}"
    return "invalid UTF-8 in a string"


def _parse_json_object(buf: memoryview, where: str) -> dict[str, Any]:
    """Parse `buf` as one JSON object; InvalidRequestError saying where it is broken."""
    try:
        value = msgspec.json.decode(buf)
    except msgspec.DecodeError as exc:
        raise _invalid(f"{where} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise _invalid(f"{where} is not valid UTF-8: {_utf8_problem(buf)}") from exc
    except RecursionError as exc:
        raise _invalid(f"{where} is not valid JSON: nested too deeply") from exc
    return _object(value, where)


def _parse_body(
    body: bytes, header_length: int | None, doc: str
) -> tuple[dict[str, Any], memoryview | None]:
    """Split `body` into its parsed JSON object and the binary tail (None: no header)."""
    view = memoryview(body)
    if header_length is None:
        return _parse_json_object(view, f"{doc} body"), None
    if type(header_length) is not int or not 0 <= header_length <= len(body):
        raise _invalid(
            f"{HEADER_LENGTH_HEADER} is {header_length!r}; expected an integer from 0 to "
            f"the body length {len(body)}"
        )
    where = f"JSON header of the {doc} (first {header_length} bytes, per {HEADER_LENGTH_HEADER})"
    return _parse_json_object(view[:header_length], where), view[header_length:]


# ---------------------------------------------------------------------------- tensor heads


class _Head(NamedTuple):
    """A tensor's validated JSON fields, before its data is converted."""

    what: str
    name: str
    datatype: str
    shape: tuple[int, ...]
    elements: int
    parameters: dict[str, Any]
    binary_size: int | None
    data: Any


def _datatype(obj: dict[str, Any], what: str) -> str:
    datatype = _required_str(obj, "datatype", what)
    if datatype not in DATATYPES:
        raise _invalid(
            f"{what}: unknown datatype {_show(datatype)}; expected one of {_DATATYPE_LIST}"
        )
    return datatype


def _shape(obj: dict[str, Any], what: str) -> tuple[int, ...]:
    shape = obj.get("shape")
    if type(shape) is not list:
        got = "nothing" if shape is None else f"{_kind(shape)} {_show(shape)}"
        raise _invalid(f"{what}: 'shape' must be an array of non-negative integers, got {got}")
    if len(shape) > MAX_RANK:
        raise _invalid(f"{what}: shape has {len(shape)} dimensions; at most {MAX_RANK} allowed")
    for index, dim in enumerate(shape):
        if type(dim) is not int or dim < 0:
            raise _invalid(
                f"{what}: shape[{index}] is {_show(dim)}; expected a non-negative integer"
            )
    return tuple(shape)


def _element_count(shape: tuple[int, ...], what: str, max_elements: int) -> int:
    count = math.prod(shape)
    if count > max_elements:
        raise PayloadTooLargeError(
            f"{what}: shape {list(shape)} has {count} elements; the limit is {max_elements}"
        )
    if math.prod(max(dim, 1) for dim in shape) > _MAX_VOLUME:
        raise _invalid(f"{what}: shape {list(shape)} is too large to hold in an array")
    return count


def _read_head(raw: Any, where: str, kind: str, max_elements: int) -> _Head:
    obj = _object(raw, where)
    name = _required_str(obj, "name", where)
    what = f"{kind} {name!r}"
    datatype = _datatype(obj, what)
    shape = _shape(obj, what)
    count = _element_count(shape, what, max_elements)
    params = _optional_object(obj, "parameters", what)
    binary_size = _optional_count(params, "binary_data_size", what)
    data = obj.get("data")
    if (data is None) == (binary_size is None):
        raise _invalid(
            f"{what}: give exactly one of 'data' or parameters.binary_data_size "
            f"({'neither' if data is None else 'both'} given)"
        )
    rest = _without(params, "binary_data_size")
    return _Head(what, name, datatype, shape, count, rest, binary_size, data)


def _split_binary(
    heads: list[_Head], tail: memoryview | None, kind: str
) -> list[memoryview | None]:
    """Cut `tail` into each head's binary chunk (None for heads with JSON data)."""
    binary = [head for head in heads if head.binary_size is not None]
    if tail is None:
        if binary:
            raise _invalid(
                f"{binary[0].what}: parameters.binary_data_size is set but the body has no "
                f"binary part (no {HEADER_LENGTH_HEADER} header)"
            )
        return [None] * len(heads)
    total = sum(head.binary_size or 0 for head in binary)
    if total != len(tail):
        raise _invalid(
            f"binary_data_size of the {kind}s adds up to {total} bytes but {len(tail)} bytes "
            "follow the JSON header"
        )
    ends = itertools.accumulate(head.binary_size or 0 for head in heads)
    return [
        None if head.binary_size is None else tail[end - head.binary_size : end]
        for head, end in zip(heads, ends, strict=True)
    ]


# ---------------------------------------------------------------------------- tensor data


def _flatten(data: list[Any], what: str) -> list[Any]:
    """Flatten nested arrays row-major; each level must be all arrays or all scalars."""
    flat = data
    while flat and type(flat[0]) is list:
        if set(map(type, flat)) != {list}:
            raise _invalid(f"{what}: 'data' mixes arrays and scalars at the same nesting level")
        flat = list(itertools.chain.from_iterable(flat))
    return flat


def _expected(datatype: str) -> str:
    if datatype == "BOOL":
        return "true or false"
    if datatype == "BYTES":
        return "strings"
    if datatype.startswith("FP"):
        return "numbers"
    info = np.iinfo(_DTYPES[datatype])
    return f"integers from {info.min} to {info.max}"


def _check_json_types(flat: list[Any], head: _Head) -> None:
    bad = set(map(type, flat)) - _JSON_TYPES[head.datatype]
    if bad:
        index, value = next((i, v) for i, v in enumerate(flat) if type(v) in bad)
        raise _invalid(
            f"{head.what}: data[{index}] is {_kind(value)} {_show(value)}; "
            f"{head.datatype} data must be {_expected(head.datatype)}"
        )


def _out_of_range(flat: list[Any], head: _Head) -> InvalidRequestError:
    """The error naming the first element that does not fit the datatype."""
    for index, value in enumerate(flat):
        try:
            _to_numpy([value], head.datatype)
        except OverflowError:
            return _invalid(
                f"{head.what}: data[{index}] = {_show(value)} is out of range for "
                f"{head.datatype}; expected {_expected(head.datatype)} within its range"
            )
    return _invalid(f"{head.what}: data is out of range for {head.datatype}")


def _to_numpy(flat: list[Any], datatype: str) -> npt.NDArray[Any]:
    """Convert type-checked JSON elements; OverflowError if one does not fit `datatype`."""
    if datatype == "BYTES":
        return _to_numpy_bytes([text.encode("utf-8") for text in flat])
    limit = _FLOAT_MAX.get(datatype)
    if limit is not None and flat and (max(flat) > limit or min(flat) < -limit):
        raise OverflowError(f"out of range for {datatype}")
    return np.asarray(flat, dtype=_DTYPES[datatype])


def _json_array(head: _Head) -> npt.NDArray[Any]:
    if type(head.data) is not list:
        raise _invalid(
            f"{head.what}: 'data' must be an array, got {_kind(head.data)} {_show(head.data)}"
        )
    flat = _flatten(head.data, head.what)
    if len(flat) != head.elements:
        raise _invalid(
            f"{head.what}: 'data' has {len(flat)} elements but shape {list(head.shape)} "
            f"needs {head.elements}"
        )
    _check_json_types(flat, head)
    try:
        return _to_numpy(flat, head.datatype)
    except OverflowError:
        raise _out_of_range(flat, head) from None


def _unpack_bytes(chunk: memoryview, head: _Head) -> npt.NDArray[Any]:
    """Parse `head.elements` length-prefixed BYTES elements that must fill `chunk` exactly."""
    items: list[bytes] = []
    position, size = 0, len(chunk)
    for index in range(head.elements):
        if position + 4 > size:
            raise _invalid(
                f"{head.what}: binary BYTES data ends at byte {size} before the 4-byte length "
                f"of element {index} of {head.elements}"
            )
        (length,) = _U32.unpack_from(chunk, position)
        position += 4
        if position + length > size:
            raise _invalid(
                f"{head.what}: binary BYTES element {index} declares {length} bytes but only "
                f"{size - position} remain"
            )
        items.append(bytes(chunk[position : position + length]))
        position += length
    if position != size:
        raise _invalid(
            f"{head.what}: {size - position} bytes left over after the {head.elements} "
            "BYTES elements its shape calls for"
        )
    return _to_numpy_bytes(items)


def _to_numpy_bytes(items: list[bytes]) -> npt.NDArray[Any]:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _binary_array(chunk: memoryview, head: _Head) -> npt.NDArray[Any]:
    if head.datatype == "BYTES":
        return _unpack_bytes(chunk, head)
    dtype = _DTYPES[head.datatype]
    expected = head.elements * dtype.itemsize
    if len(chunk) != expected:
        raise _invalid(
            f"{head.what}: binary_data_size is {len(chunk)} bytes but {head.elements} "
            f"{head.datatype} elements take {expected}"
        )
    array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
    if head.datatype == "BOOL" and head.elements and array.view(np.uint8).max() > 1:
        raise _invalid(f"{head.what}: binary BOOL data holds a byte other than 0 or 1")
    if not array.dtype.isnative or not array.flags.aligned:
        array = array.astype(dtype)
    return array


def _tensor_data(head: _Head, chunk: memoryview | None) -> npt.NDArray[Any]:
    array = _json_array(head) if chunk is None else _binary_array(chunk, head)
    return array.reshape(head.shape)


def _decode_tensors(
    raw: list[Any], kind: str, tail: memoryview | None, max_elements: int
) -> list[tuple[_Head, npt.NDArray[Any]]]:
    """Validate and convert the request inputs or response outputs, in order."""
    heads = [_read_head(item, f"{kind}s[{i}]", kind, max_elements) for i, item in enumerate(raw)]
    _check_unique([head.name for head in heads], kind)
    chunks = _split_binary(heads, tail, kind)
    return [(head, _tensor_data(head, chunk)) for head, chunk in zip(heads, chunks, strict=True)]


# ---------------------------------------------------------------------------- requests


def _requested_output(raw: Any, index: int) -> RequestedOutput:
    obj = _object(raw, f"outputs[{index}]")
    name = _required_str(obj, "name", f"outputs[{index}]")
    what = f"requested output {name!r}"
    params = _optional_object(obj, "parameters", what)
    binary = _optional_bool(params, "binary_data", what)
    classification = _optional_count(params, "classification", what) or 0
    return RequestedOutput(name, binary, classification, _without(params, *_OUTPUT_KEYS))


def _requested_outputs(raw: Any) -> tuple[RequestedOutput, ...]:
    if raw is None:
        return ()
    if type(raw) is not list:
        raise _invalid(f"'outputs' must be an array of objects, got {_kind(raw)} {_show(raw)}")
    outputs = tuple(_requested_output(item, index) for index, item in enumerate(raw))
    _check_unique([output.name for output in outputs], "requested output")
    return outputs


def _input_list(top: dict[str, Any]) -> list[Any]:
    inputs = top.get("inputs")
    if type(inputs) is not list or not inputs:
        got = "nothing" if inputs is None else f"{_kind(inputs)} {_show(inputs)}"
        raise _invalid(f"'inputs' must be a non-empty array of input tensors, got {got}")
    return inputs


def decode_infer_request(
    body: bytes, *, header_length: int | None, max_body_bytes: int, max_elements: int
) -> InferRequest:
    """Decode an infer request body (JSON, or JSON header + binary tensors).

    `header_length` is the ``Inference-Header-Content-Length`` header (None: all JSON).
    Raises PayloadTooLargeError if the body exceeds `max_body_bytes` or a tensor's shape
    exceeds `max_elements`; InvalidRequestError, naming the offending field and value, for
    anything else malformed. Nothing else escapes for any input bytes.
    """
    if len(body) > max_body_bytes:
        raise PayloadTooLargeError(
            f"request body is {len(body)} bytes; the limit is {max_body_bytes} bytes"
        )
    top, tail = _parse_body(body, header_length, "request")
    request_id = _optional_str(top, "id", "request")
    params = _optional_object(top, "parameters", "request")
    binary_output = _optional_bool(params, "binary_data_output", "request")
    outputs = _requested_outputs(top.get("outputs"))
    tensors = _decode_tensors(_input_list(top), "input", tail, max_elements)
    inputs = tuple(InputTensor(h.name, h.datatype, h.shape, a, h.parameters) for h, a in tensors)
    rest = _without(params, "binary_data_output")
    return InferRequest(request_id, inputs, outputs, rest, bool(binary_output))


# ---------------------------------------------------------------------------- encoding


def _bytes_items(data: TensorData, what: str) -> list[bytes]:
    """BYTES elements as `bytes` (str items are UTF-8 encoded); TypeError for others."""
    flat = data.ravel().tolist() if isinstance(data, np.ndarray) else list(data)
    items: list[bytes] = []
    for item in flat:
        if not isinstance(item, bytes | str):
            raise TypeError(f"{what}: BYTES elements must be bytes or str, got {_show(item)}")
        items.append(item.encode("utf-8") if isinstance(item, str) else item)
    return items


def _json_bytes(items: list[bytes]) -> list[str] | None:
    try:
        return [item.decode("utf-8") for item in items]
    except UnicodeDecodeError:
        return None


def _pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(part for item in items for part in (_U32.pack(len(item)), item))


def _wire_bytes(items: list[bytes], binary: bool) -> tuple[list[Any] | None, bytes | None]:
    text = None if binary else _json_bytes(items)
    return (text, None) if text is not None else (None, _pack_bytes(items))


def _wire_numeric(
    array: npt.NDArray[Any], binary: bool
) -> tuple[list[Any] | None, _Payload | None]:
    """(JSON data, None), or (None, little-endian buffer) when binary or not JSON-exact."""
    if not binary and (array.dtype.kind != "f" or np.isfinite(array).all()):
        return array.ravel().tolist(), None
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return None, little.reshape(-1).data


_Wire = tuple[list[int], list[Any] | None, _Payload | None]


def _wire_data(datatype: str, data: TensorData, binary: bool, what: str) -> _Wire:
    """(shape, JSON data, None) or (shape, None, binary payload) for one tensor."""
    if datatype == "BYTES":
        shape = list(np.shape(data)) if isinstance(data, np.ndarray) else [len(data)]
        return shape, *_wire_bytes(_bytes_items(data, what), binary)
    array = np.asarray(data, dtype=datatype_to_numpy(datatype))
    return list(array.shape), *_wire_numeric(array, binary)


def _wire_tensor(
    name: str, datatype: str, data: TensorData, parameters: dict[str, Any], binary: bool
) -> tuple[dict[str, Any], _Payload | None]:
    """The tensor's JSON object and its binary payload (None when sent as JSON)."""
    shape, json_data, payload = _wire_data(datatype, data, binary, f"tensor {name!r}")
    obj: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if payload is not None:
        parameters = {**parameters, "binary_data_size": memoryview(payload).nbytes}
    if parameters:
        obj["parameters"] = parameters
    if json_data is not None:
        obj["data"] = json_data
    return obj, payload


def _check_datatype(name: str, datatype: str, data: npt.NDArray[Any]) -> None:
    actual = numpy_to_datatype(data.dtype)
    if actual != datatype:
        raise ValueError(f"output {name!r} is declared {datatype} but holds {actual} data")


def _assemble(doc: dict[str, Any], payloads: list[_Payload]) -> tuple[bytes, dict[str, str]]:
    header = msgspec.json.encode(doc)
    if not payloads:
        return header, {"Content-Type": "application/json"}
    header += b" " * (-len(header) % 8)  # JSON allows trailing spaces; aligns the 1st tensor
    headers = {HEADER_LENGTH_HEADER: str(len(header)), "Content-Type": "application/octet-stream"}
    return b"".join([header, *payloads]), headers


def encode_infer_response(
    response: InferResponse, *, binary_outputs: Collection[str]
) -> tuple[bytes, dict[str, str]]:
    """Encode a response as (body, extra HTTP headers).

    Outputs named in `binary_outputs` (and any output JSON cannot carry exactly) go as
    binary data after the JSON header, with ``Inference-Header-Content-Length`` set;
    otherwise the body is pure JSON. ValueError if an output's data does not match its
    declared datatype.
    """
    doc: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        doc["model_version"] = response.model_version
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    wire = []
    for out in response.outputs:
        _check_datatype(out.name, out.datatype, out.data)
        binary = out.name in binary_outputs
        wire.append(_wire_tensor(out.name, out.datatype, out.data, out.parameters, binary))
    doc["outputs"] = [obj for obj, _ in wire]
    return _assemble(doc, [payload for _, payload in wire if payload is not None])


def _input_datatype(data: TensorData) -> str:
    return numpy_to_datatype(data.dtype) if isinstance(data, np.ndarray) else "BYTES"


def _output_object(output: str | RequestedOutput) -> dict[str, Any]:
    if isinstance(output, str):
        return {"name": output}
    params = dict(output.parameters)
    if output.binary_data is not None:
        params["binary_data"] = output.binary_data
    if output.classification:
        params["classification"] = output.classification
    return {"name": output.name, "parameters": params} if params else {"name": output.name}


def encode_infer_request(
    inputs: Sequence[tuple[str, TensorData]],
    *,
    binary: bool | Collection[str],
    parameters: dict[str, Any] | None = None,
    outputs: Sequence[str | RequestedOutput] | None = None,
    request_id: str | None = None,
    binary_data_output: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """Encode an infer request as (body, HTTP headers); the client-side counterpart.

    Each input is (name, data): a numeric ndarray (datatype from its dtype) or BYTES as an
    object ndarray / sequence of bytes or str. `binary` sends all (True), none (False) or
    the named inputs as binary data; values JSON cannot carry exactly go binary regardless.
    """
    wire = [
        _wire_tensor(name, _input_datatype(data), data, {}, _named(binary, name))
        for name, data in inputs
    ]
    doc: dict[str, Any] = {"inputs": [obj for obj, _ in wire]}
    if request_id is not None:
        doc["id"] = request_id
    params = dict(parameters or {})
    if binary_data_output:
        params["binary_data_output"] = True
    if params:
        doc["parameters"] = params
    if outputs:
        doc["outputs"] = [_output_object(output) for output in outputs]
    return _assemble(doc, [payload for _, payload in wire if payload is not None])


def _named(selection: bool | Collection[str], name: str) -> bool:
    return selection if isinstance(selection, bool) else name in selection


# ---------------------------------------------------------------------------- responses


def decode_infer_response(body: bytes, header_length: int | None) -> InferResponse:
    """Decode an infer response body; the client-side counterpart of `encode_infer_response`.

    Raises InvalidRequestError (here meaning: the response is malformed) with the same
    precise messages as `decode_infer_request`.
    """
    top, tail = _parse_body(body, header_length, "response")
    model_name = _required_str(top, "model_name", "response")
    version = _optional_str(top, "model_version", "response")
    response_id = _optional_str(top, "id", "response")
    params = _optional_object(top, "parameters", "response")
    raw = top.get("outputs", [])
    if type(raw) is not list:
        raise _invalid(f"response: 'outputs' must be an array, got {_kind(raw)} {_show(raw)}")
    tensors = _decode_tensors(raw, "output", tail, _MAX_VOLUME)
    outputs = tuple(OutputTensor(h.name, h.datatype, a, h.parameters) for h, a in tensors)
    return InferResponse(model_name, version, response_id, outputs, params)
