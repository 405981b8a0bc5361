"""The OpenAPI 3 description of rheostat's HTTP API (served at `GET /openapi.json`).

It describes the Open Inference Protocol v2 endpoints as KServe's specification defines
them (health, metadata, infer with JSON tensors, statistics, repository control) plus
rheostat's own (`/rheostat/plan`, `/rheostat/timeseries`). Fuzzers (schemathesis) generate
requests from it; every error answer is `{"error": "..."}` with a 4xx status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rheostat

__all__ = ["openapi_description"]

DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_PARAMETERS = {"type": "object", "additionalProperties": True}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": DATATYPES},
        "parameters": _PARAMETERS,
        "data": {"type": "array", "items": {}},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
            },
        },
    },
}


def _answers(ok: str, *errors: int) -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": ok}}
    for status in errors:
        answers[str(status)] = {
            "description": "error",
            "content": {"application/json": {"schema": _ERROR}},
        }
    return answers


def _get(summary: str, *errors: int, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params or [],
            "responses": _answers(summary, *errors),
        }
    }


def _infer(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Run inference (JSON tensors; binary tensors per the extension)",
            "parameters": params,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _INFER_REQUEST}},
            },
            "responses": _answers("inference result", 400, 404, 413, 429, 503, 504),
        }
    }


def _post(summary: str, *errors: int, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {"summary": summary, "parameters": params, "responses": _answers(summary, *errors)}
    }


def _with_body(summary: str, method: str, schema: dict[str, Any], *errors: int,
               params: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        method: {
            "summary": summary,
            "parameters": params or [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": _answers(summary, *errors),
        }
    }


_FEEDBACK = {
    "type": "object",
    "required": ["id", "labels"],
    "properties": {
        "id": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
}
_APP = {
    "type": "object",
    "properties": {
        "family": {"type": "string"},
        "slo_ms": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        "min_accuracy": {"type": "number", "minimum": 0, "maximum": 1},
        "max_energy_j": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        "priority": {"type": "integer", "minimum": 0},
        "max_share": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
    },
    "additionalProperties": False,
}


def _path_parameter(name: str, values: Sequence[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if values:
        schema["enum"] = list(values)
    return {"name": name, "in": "path", "required": True, "schema": schema}


def openapi_description(models: Sequence[str] = (), versions: Sequence[str] = ()) -> dict[str, Any]:
    """The description; `models` and `versions` list what this server serves (so clients
    and fuzzers know the valid path parameters)."""
    name = _path_parameter("model", models)
    version = _path_parameter("version", versions)
    model, versioned = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    both = [name, version]
    paths: dict[str, Any] = {
        "/v2/health/live": _get("server is live"),
        "/v2/health/ready": _get("server is ready", 503),
        "/v2": _get("server metadata"),
        model: _get("model metadata", 404, params=[name]),
        versioned: _get("model metadata", 400, 404, params=both),
        f"{model}/ready": _get("model ready", 404, 503, params=[name]),
        f"{versioned}/ready": _get("model ready", 400, 404, 503, params=both),
        f"{model}/infer": _infer([name]),
        f"{versioned}/infer": _infer(both),
        f"{model}/stats": _get("inference statistics", 404, params=[name]),
        "/v2/repository/index": _post("repository index", params=[]),
        "/v2/repository/models/{model}/load": _post("load a model", 400, 404, params=[name]),
        "/v2/repository/models/{model}/unload": _post("unload a model", 404, params=[name]),
        "/rheostat/plan": _get("current plan, controller log and profiles"),
        "/rheostat/timeseries": _get("per-second series for the web page"),
        "/rheostat/feedback": {
            **_with_body("labels for an earlier answer", "post", _FEEDBACK, 400, 404),
            **_get("accuracy monitor and retraining log"),
        },
        "/rheostat/apps": _get("app policies"),
        "/rheostat/clients": _get("edge clients and their variant and input size"),
        "/rheostat/apps/{app}": {
            **_with_body(
                "create or change an app policy",
                "put",
                _APP,
                400,
                params=[_path_parameter("app", ())],
            ),
            "delete": {
                "summary": "remove an app policy",
                "parameters": [_path_parameter("app", ())],
                "responses": _answers("removed", 404),
            },
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "rheostat (Open Inference Protocol v2)",
            "version": rheostat.__version__,
            "description": "KServe v2 inference protocol, plus rheostat's plan and series.",
        },
        "paths": paths,
    }
