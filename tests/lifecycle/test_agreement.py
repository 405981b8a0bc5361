"""Accuracy as top-1 agreement with a reference model, on tiny image models of two sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rheostat.lifecycle.agreement import AgreementSet, top1_on_images
from rheostat.repository import ImagePreprocessing


def colour_model(path: Path, size: int, weights: np.ndarray) -> Path:
    """logits = (mean colour of the (N, 3, size, size) input) @ weights."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "W"], ["logits"]),
        ],
        "colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path


def spec(size: int) -> ImagePreprocessing:
    return ImagePreprocessing(crop_px=size, resize_shorter_px=size, mean=(0, 0, 0), std=(1, 1, 1))


def test_agreement_with_the_reference_across_input_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(60)]
    reds = [np.full((20, 30, 3), (200, 10, 10), dtype=np.uint8)] * 2
    big = colour_model(tmp_path / "big.onnx", 16, np.eye(3))  # the brightest channel
    small = colour_model(tmp_path / "small.onnx", 8, np.eye(3))
    darkest = colour_model(tmp_path / "darkest.onnx", 8, -np.eye(3))
    assert top1_on_images(big, reds, spec(16)).tolist() == [0, 0]
    scoring = AgreementSet.measure(big, spec(16), images)
    assert scoring.agreement(big, spec(16)) == 1.0
    assert 0.8 <= scoring.agreement(small, spec(8)) <= 1.0  # same rule, fewer pixels
    assert scoring.agreement(darkest, spec(8)) == 0.0  # never the same channel
    with pytest.raises(ValueError, match="at least one image"):
        top1_on_images(big, [], spec(16))


def test_agreement_on_frames_as_a_client_sends_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    # smooth colour fields with a little noise: JPEG keeps the mean colour at 85, and at 5
    # its blocks blur it enough that some images change their brightest channel
    images = []
    for _ in range(60):
        base = rng.integers(60, 200, 3)
        noise = rng.normal(0, 40, (40, 50, 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    small = colour_model(tmp_path / "small.onnx", 8, np.eye(3))
    scoring = AgreementSet.measure(small, spec(8), images)
    sent = scoring.sent(spec(8), 85)
    assert len(sent) == 60 and all(min(s.shape[:2]) == 8 for s in sent)  # scaled, then JPEG
    assert scoring.sent(spec(8), 85) is sent  # encoded once per size and quality
    high, low = scoring.agreement(small, spec(8), 85), scoring.agreement(small, spec(8), 5)
    assert high >= 0.9 and low < high
