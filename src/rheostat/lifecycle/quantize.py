"""ONNX tools for the repository build: export, inference, agreement, latency, int8 quantization.

Everything here runs on the CPU with ONNX Runtime. `torch` is imported only by `export_onnx`;
`onnxruntime.quantization` only by `quantize_int8`.

Static int8 quantization (`quantize_int8`) follows ONNX Runtime's recipe for x86-64:

* the float model first goes through `quant_pre_process` (graph optimisation + shape
  inference), so that constant sub-graphs (e.g. padding arithmetic) are folded away;
* activations are uint8, weights int8 per output channel with `reduce_range` (7-bit weights):
  on CPUs without VNNI, ONNX Runtime's u8s8 kernels use VPMADDUBSW, whose int16 intermediate
  sums saturate with full 8-bit weights; 7 bits cannot saturate;
* activation ranges come from MinMax calibration over the batches the caller gives.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rheostat.clock import Stopwatch

__all__ = [
    "LatencyComparison",
    "compare_latency",
    "export_onnx",
    "ort_session",
    "predict",
    "quantize_int8",
    "top1_agreement",
    "top1_classes",
]

OPSET = 17
QUANT_FORMATS = ("QDQ", "QOperator")


def export_onnx(
    model: Any,
    example: Any,
    path: Path,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    extra_outputs: Sequence[str] = (),
) -> Path:
    """Export a torch module (in eval mode) to ONNX opset 17 with a dynamic batch axis.

    A module returning a tuple names its outputs `output_name, *extra_outputs`.

    Uses the TorchScript exporter (`dynamo=False`). Its deprecation notice and the
    constant-folding notes it prints for strided slices are expected and silenced here only.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"Constant folding", category=UserWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name, *extra_outputs],
            dynamic_axes={n: {0: "batch"} for n in (input_name, output_name, *extra_outputs)},
        )
    return path


def ort_session(path: Path, *, threads: int = 2) -> Any:
    """A CPU `onnxruntime.InferenceSession`: `threads` intra-op threads, 1 inter-op, and no
    spin-waiting.

    Spinning threads keep a core busy after each run; with two sessions alive on a two-core
    machine they slow each other down by up to 2x and make timings erratic.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(session: Any, inputs: NDArray[np.float32], *, batch_size: int = 64) -> NDArray[Any]:
    """The first output of `session` for `inputs`, run `batch_size` rows at a time."""
    name = session.get_inputs()[0].name
    parts = [
        session.run(None, {name: inputs[i : i + batch_size]})[0]
        for i in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(parts, axis=0)


def top1_classes(
    model: Path, inputs: NDArray[np.float32], *, batch_size: int = 16
) -> NDArray[np.int64]:
    """The arg-max class of `model`'s first output for each row of `inputs`."""
    logits = predict(ort_session(model), inputs, batch_size=batch_size)
    return np.asarray(logits.argmax(axis=1), dtype=np.int64)


def top1_agreement(
    model_a: Path, model_b: Path, inputs: NDArray[np.float32], *, batch_size: int = 16
) -> float:
    """Fraction of `inputs` on which the two models' arg-max classes are equal (0..1)."""
    if len(inputs) == 0:
        raise ValueError("top1_agreement needs at least one input")
    a = top1_classes(model_a, inputs, batch_size=batch_size)
    b = top1_classes(model_b, inputs, batch_size=batch_size)
    return float(np.mean(a == b))


@dataclass(frozen=True)
class LatencyComparison:
    """Latency of a baseline and a candidate model at one batch size, timed in pairs."""

    batch_size: int
    baseline_s: float  # median
    candidate_s: float  # median
    speedup: float  # median over pairs of baseline / candidate: above 1 when faster


def compare_latency(
    baseline: Path,
    candidate: Path,
    inputs: NDArray[np.float32],
    *,
    batch_size: int,
    repetitions: int = 9,
    threads: int = 2,
    warmup: int = 3,
) -> LatencyComparison:
    """Time both models on the first `batch_size` rows of `inputs`, `repetitions` times.

    After `warmup` untimed runs each, runs alternate (baseline, candidate, baseline, ...) and
    the speedup is the median of each adjacent pair's ratio, so that a slow spell on a shared
    machine hits both sides of a pair alike instead of skewing one median.
    """
    sessions = [ort_session(baseline, threads=threads), ort_session(candidate, threads=threads)]
    feed = {sessions[0].get_inputs()[0].name: inputs[:batch_size]}
    for session in sessions:
        for _ in range(warmup):
            session.run(None, feed)
    times = np.zeros((repetitions, 2))
    for i in range(repetitions):
        for j, session in enumerate(sessions):
            with Stopwatch() as watch:
                session.run(None, feed)
            times[i, j] = watch.elapsed_s
    return LatencyComparison(
        batch_size=batch_size,
        baseline_s=float(np.median(times[:, 0])),
        candidate_s=float(np.median(times[:, 1])),
        speedup=float(np.median(times[:, 0] / times[:, 1])),
    )


def _calibration_reader(batches: Sequence[NDArray[np.float32]], input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        """Feeds the calibration batches once, in order."""

        def __init__(self) -> None:
            self._batches: Iterator[NDArray[np.float32]] = iter(batches)

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    return _Reader()


def quantize_int8(
    model: Path,
    output: Path,
    calibration: NDArray[np.float32],
    *,
    quant_format: str = "QDQ",
    keep_float: Sequence[str] = (),
    batch_size: int = 8,
) -> Path:
    """Write a statically quantized int8 copy of `model` to `output` (see the module notes).

    `calibration` holds the model inputs (N, ...) that set the activation ranges;
    `quant_format` is "QDQ" (QuantizeLinear/DequantizeLinear pairs, fused by ONNX Runtime at
    load) or "QOperator" (QLinearConv etc.); nodes whose name starts with one of the
    `keep_float` prefixes stay float32.
    """
    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"quant_format {quant_format!r} is not one of {QUANT_FORMATS}")
    if len(calibration) == 0:
        raise ValueError("quantize_int8 needs at least one calibration input")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort_session(model, threads=1).get_inputs()[0].name
    batches = [calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)]
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        excluded = _node_names(prepared, keep_float)
        quantize_static(
            str(prepared),
            str(output),
            _calibration_reader(batches, input_name),
            quant_format=QuantFormat[quant_format],
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )
    return output


def _node_names(model: Path, prefixes: Sequence[str]) -> list[str]:
    """Names of the nodes of `model` that start with one of `prefixes`."""
    if not prefixes:
        return []
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.name.startswith(tuple(prefixes))]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence what ONNX Runtime's quantization tools log (root logger) and print."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
