"""10,000 fuzzed requests against a real server: zero 5xx, and the server keeps serving.

About 2,000 come from schemathesis, generated from the server's own OpenAPI description
(valid and invalid requests for every operation but repository load/unload, whose
correct answer to a valid request is to take models away); the rest are hypothesis-generated infer
bodies aimed at the tensor decoder: any datatype, shape and data, binary-extension bodies
with lying headers, and parameters of every type.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from conftest import Server, start_server, stop_server
from rheostat.api.openapi import DATATYPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEMA_EXAMPLES = 300  # per operation and mode; small operations exhaust their space sooner
TENSOR_EXAMPLES = 8000
MODELS = ("digits", "efficientnet_lite", "digits.mlp_tiny", "efficientnet_lite.lite0")


@pytest.fixture(scope="module")
def server(default_repository: Path) -> Iterator[Server]:
    server = start_server(default_repository, "--device", "cpu:0")
    yield server
    stop_server(server)


def assert_alive(server: Server) -> None:
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    tensor = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [1.0] * 64}
    r = httpx.post(f"{server.url}/v2/models/digits/infer", json={"inputs": [tensor]})
    assert r.status_code == 200, r.text


def test_schemathesis_from_the_openapi_description(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    seen: list[int] = []
    errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/v2/repository/models/"):
            continue  # unloading models is what those do; tests/api/test_server.py has them
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=SCHEMA_EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck),
            )  # fmt: skip
            def call(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, timeout=30)
                seen.append(response.status_code)
                if response.status_code >= 500:
                    errors.append(f"{case.method} {case.formatted_path}: {response.text[:200]}")

            with contextlib.suppress(Unsatisfiable):  # no invalid request without inputs
                call()
    print(f"schemathesis: {len(seen)} requests, statuses {sorted(set(seen))}")
    assert errors == []
    assert len(seen) >= 2000 and all(400 <= s < 500 or s < 300 for s in seen)
    assert_alive(server)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=8),
)  # fmt: skip
data = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=80)
shapes = st.one_of(
    st.lists(st.integers(-3, 300), max_size=5),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=3),
    st.just("64"), st.none(),
)  # fmt: skip
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(["input", "image", "x", ""]),
     "datatype": st.one_of(st.sampled_from(DATATYPES), st.text(max_size=5)),
     "shape": shapes},
    optional={"data": data, "parameters": st.dictionaries(st.text(max_size=12), scalars)},
)  # fmt: skip
parameters = st.dictionaries(
    st.sampled_from(["priority", "timeout", "slo_ms", "min_accuracy", "app",
                     "binary_data_output", "classification", "x"]),
    scalars, max_size=4,
)  # fmt: skip
bodies = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(tensors, max_size=3), scalars)},
    optional={"parameters": parameters, "id": scalars,
              "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}))},
)  # fmt: skip


def test_hypothesis_tensors(server: Server) -> None:
    errors: list[str] = []
    count = [0]
    with httpx.Client(base_url=server.url, timeout=30) as client:

        @given(
            model=st.sampled_from(MODELS),
            body=bodies,
            binary=st.one_of(st.none(), st.binary(max_size=600)),
            claimed=st.one_of(
                st.none(), st.integers(-5, 10_000), st.from_regex(r"[0-9x+-]{1,4}", fullmatch=True)
            ),
        )
        @settings(
            max_examples=TENSOR_EXAMPLES, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def post(model: str, body: dict, binary: bytes | None, claimed: object) -> None:  # type: ignore[type-arg]
            content = json.dumps(body, allow_nan=True).encode()
            headers = {"content-type": "application/json"}
            if binary is not None:  # the binary extension, its header honest or not
                length = len(content) if claimed is None else claimed
                headers["Inference-Header-Content-Length"] = str(length)
                content += binary
            r = client.post(f"/v2/models/{model}/infer", content=content, headers=headers)
            count[0] += 1
            if r.status_code >= 500:
                errors.append(f"{r.status_code} {model} {content[:200]!r}: {r.text[:200]}")

        post()
    assert errors == [], errors[:5]
    assert count[0] == TENSOR_EXAMPLES
    assert_alive(server)
