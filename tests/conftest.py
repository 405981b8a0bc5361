"""Shared fixtures: a tiny ONNX repository built in-process, and real server processes."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from rheostat.repository import (
    DynamicBatching,
    FamilyConfig,
    InputKind,
    QueuePolicy,
    TensorSpec,
    VariantConfig,
    load_family,
    write_family_config,
)

ROOT = Path(__file__).resolve().parents[1]
TOY_WEIGHTS = {
    "fast": np.arange(12, dtype=np.float32).reshape(4, 3) / 10,
    "slow": -np.arange(12, dtype=np.float32).reshape(4, 3) / 10,
}


def toy_model(weights: np.ndarray, burn: int) -> onnx.ModelProto:
    """logits = input @ weights (+ 0 x a `burn`-sized matmul chain that takes time)."""
    nodes = [helper.make_node("MatMul", ["input", "W"], ["y"])]
    inits = [numpy_helper.from_array(weights, "W")]
    if burn:
        big = np.full((burn, burn), 1e-3, np.float32)
        inits += [numpy_helper.from_array(big, "B"), numpy_helper.from_array(np.float32(0), "Z")]
        nodes += [
            helper.make_node("ReduceSum", ["input"], ["s"], keepdims=1),
            helper.make_node("Expand", ["s", "shape"], ["e"]),
            helper.make_node("MatMul", ["e", "B"], ["m1"]),
            helper.make_node("MatMul", ["m1", "B"], ["m2"]),
            helper.make_node("ReduceSum", ["m2"], ["r"], keepdims=1),
            helper.make_node("Mul", ["r", "Z"], ["zero"]),
            helper.make_node("Add", ["y", "zero"], ["logits"]),
        ]
        inits.append(numpy_helper.from_array(np.array([burn, burn], np.int64), "shape"))
    else:
        nodes[0] = helper.make_node("MatMul", ["input", "W"], ["logits"])
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def build_toy_repository(
    root: Path, *, policy: str = "deadline_aware", queue: int = 64, delay_us: int = 1000
) -> Path:
    spec = TensorSpec("input", "TYPE_FP32", (4,))
    variants = {
        "fast": VariantConfig("fast", 0.80, "declared for tests", spec),
        "slow": VariantConfig("slow", 0.90, "declared for tests", spec),
    }
    config = FamilyConfig(
        name="toy",
        max_batch_size=8,
        input_kind=InputKind.TENSOR,
        output=TensorSpec("logits", "TYPE_FP32", (3,)),
        variants=variants,
        slo_ms=2000,
        labels=("a", "b", "c"),
        dynamic_batching=DynamicBatching(
            policy=policy,  # type: ignore[arg-type]
            max_queue_delay_microseconds=delay_us,
            default_queue_policy=QueuePolicy(max_queue_size=queue),
        ),
    )
    family_dir = root / "toy"
    write_family_config(family_dir, config)
    for name, burn in (("fast", 0), ("slow", 384)):
        (family_dir / name / "1").mkdir(parents=True, exist_ok=True)
        onnx.save(toy_model(TOY_WEIGHTS[name], burn), family_dir / name / "1" / "model.onnx")
    return root


@pytest.fixture(scope="session")
def toy_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_repository(tmp_path_factory.mktemp("toy-repo"))


@pytest.fixture(scope="session")
def default_repository() -> Path:
    """The real default repository (`make test` builds it first)."""
    path = Path(os.environ.get("RHEOSTAT_TEST_REPOSITORY", ROOT / "model_repository"))
    if not (path / ".complete").is_file():
        pytest.fail(f"default repository missing at {path}: run `make repository` (make test does)")
    return path


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    log: list[str]
    reader: threading.Thread | None = None

    @property
    def metrics_url(self) -> str | None:
        """`http://host:port/metrics` as the server printed it (None: metrics off)."""
        found = (re.search(r"metrics on (http://\S+/metrics)", line) for line in self.log)
        return next((m.group(1) for m in found if m), None)

    def worker_pids(self) -> list[int]:
        children = psutil.Process(self.process.pid).children(recursive=True)
        return [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]


def start_server(repo: Path, *args: str, ready_timeout_s: float = 120) -> Server:
    metrics = [] if any(a in args for a in ("--metrics-port", "--no-metrics")) else [
        "--metrics-port", "0"]  # fmt: skip
    command = [sys.executable, "-m", "rheostat", "serve", "--model-repository", str(repo),
               "--http-port", "0", "--profile-repeats", "2", *metrics, *args]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log: list[str] = []
    port_found = threading.Event()

    def drain() -> None:  # keep reading so the server never blocks on a full pipe
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if re.search(r"listening on http://[\d.]+:(\d+)", line):
                port_found.set()
        port_found.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    port_found.wait(60)
    match = next(
        (m for line in log if (m := re.search(r"listening on http://[\d.]+:(\d+)", line))), None
    )
    if match is None:
        process.wait(10)
        raise RuntimeError(f"server did not start: {command}\n{''.join(log)}")
    port = int(match.group(1))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{''.join(log)}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return Server(url, process, log, reader)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(Server(url, process, log, reader))
    raise RuntimeError("server not ready in time")


def stop_server(server: Server) -> None:
    children = psutil.Process(server.process.pid).children(recursive=True)
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(5)
    if server.reader is not None:
        server.reader.join(10)
    if server.process.stderr is not None:
        server.process.stderr.close()
    for child in children:
        try:
            child.wait(10)
        except psutil.TimeoutExpired:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(repo: Path, *args: str) -> Server:
        server = start_server(repo, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_server(server)


def drive(
    url: str,
    family: str,
    rate_rps: float,
    seconds: float,
    offset_s: float,
    log: list[tuple[float, int, str]],
    details: list[tuple[float, int, float, str | None, float | None]] | None = None,
) -> None:
    """Open-loop load: one image request to `family` every 1/rate seconds, whatever the
    answers. Logs (offset_s + intended send time, HTTP status, served `family.variant`);
    `details` also gets (actual send time, status, latency in s, Retry-After header, the
    server's own arrival-to-answer time in s)."""
    from concurrent.futures import ThreadPoolExecutor

    from rheostat.api.codec import decode_infer_response, encode_infer_request

    image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    body, headers = encode_infer_request([("image", image[None])], binary=True)
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(intended_s: float) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=30)
            clients.append(local.client)
        sent = time.monotonic()
        r = local.client.post(f"/v2/models/{family}/infer", content=body, headers=headers)
        latency = time.monotonic() - sent
        variant, server_s = "", None
        if r.status_code == 200:
            length = r.headers.get("Inference-Header-Content-Length")
            response = decode_infer_response(r.content, int(length) if length else None)
            variant = str(response.parameters["variant"])
            server_s = float(response.parameters["total_ms"]) / 1e3
        if details is not None:
            retry = r.headers.get("retry-after")
            details.append((offset_s + sent - start, r.status_code, latency, retry, server_s))
        log.append((offset_s + intended_s, r.status_code, variant))

    start = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        for i in range(int(rate_rps * seconds)):
            intended = i / rate_rps
            delay = start + intended - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, intended)
    for client in clients:
        client.close()


def family_repository(
    default_repository: Path, root: Path, *families: str, variants: Sequence[str] | None = None
) -> Path:
    """A repository at `root` holding only `families` of the default one (symlinked).

    With `variants`, each family keeps only those variants: its folder is new, the variants'
    folders are symlinked, its other files (labels, ...) copied, and its config.yaml
    rewritten to list only `variants`, in that order.
    """
    root.mkdir(parents=True, exist_ok=True)
    for family in families:
        if variants is None:
            (root / family).symlink_to(default_repository / family)
        else:
            _family_subset(default_repository / family, root / family, variants)
    return root


def _family_subset(source: Path, target: Path, variants: Sequence[str]) -> None:
    config = load_family(source).config
    missing = sorted(set(variants) - set(config.variants))
    if missing:
        raise ValueError(f"{source.name} has no variants {missing}: {list(config.variants)}")
    target.mkdir()
    for item in source.iterdir():
        if item.is_dir() and item.name in variants:
            (target / item.name).symlink_to(item)
        elif item.is_file() and item.name != "config.yaml":
            shutil.copy2(item, target / item.name)
    kept = {name: config.variants[name] for name in variants}
    write_family_config(target, dataclasses.replace(config, variants=kept))


def native_lite_variants(default_repository: Path) -> list[str]:
    """efficientnet_lite's variants at their models' native input sizes (lite0/1/2 and the
    int8 copies the build kept): the family as it was before Lite0 came at 128-192 px too."""
    names = load_family(default_repository / "efficientnet_lite").config.variants
    return [name for name in names if name.removesuffix("_int8") in ("lite0", "lite1", "lite2")]


def need_cores(count: int, why: str) -> None:
    """Skip the calling test where fewer than `count` cores are available."""
    if len(os.sched_getaffinity(0)) < count:
        pytest.skip(f"needs {count} cores: {why}")
