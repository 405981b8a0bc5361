"""int8 quantization, agreement and latency tools on a small model; image decoding/preprocessing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from rheostat.lifecycle.digits import load_digits_split, train_digits_family
from rheostat.lifecycle.images import (
    augmented_crops,
    augmented_photos,
    decode_image,
    preprocess_image,
    sample_images,
)
from rheostat.lifecycle.quantize import (
    compare_latency,
    export_onnx,
    ort_session,
    predict,
    quantize_int8,
    top1_agreement,
    top1_classes,
)
from rheostat.repository import ImagePreprocessing


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained digits CNN (float32 ONNX)."""
    family_dir = tmp_path_factory.mktemp("quant") / "digits"
    train_digits_family(family_dir, variants=["cnn_small"])
    return family_dir / "cnn_small" / "1" / "model.onnx"


@pytest.fixture(scope="module")
def always_zero(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model that answers class 0 for every input."""
    model = torch.nn.Linear(64, 10)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.arange(10, 0, -1, dtype=torch.float32))
    return export_onnx(model.eval(), torch.zeros(1, 64), tmp_path_factory.mktemp("zero") / "m.onnx")


@pytest.mark.parametrize("quant_format", ["QDQ", "QOperator"])
def test_int8_copy_agrees_with_float_and_keeps_the_interface(
    cnn: Path, tmp_path: Path, quant_format: str
) -> None:
    x_train, _, x_test, y_test = load_digits_split()
    int8 = quantize_int8(cnn, tmp_path / "int8.onnx", x_train[:128], quant_format=quant_format)
    session = ort_session(int8)
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert predict(session, x_test[:7]).shape == (7, 10)
    ops = {node.op_type for node in _graph_nodes(int8)}
    assert ("QLinearConv" in ops) if quant_format == "QOperator" else ("QuantizeLinear" in ops)
    assert top1_agreement(cnn, int8, x_test) >= 0.97
    accuracy = float(np.mean(top1_classes(int8, x_test) == y_test))
    assert accuracy >= 0.95


def test_keep_float_leaves_the_named_nodes_unquantized(cnn: Path, tmp_path: Path) -> None:
    x_train, _, _, _ = load_digits_split()
    conv = next(n.name for n in _graph_nodes(cnn) if n.op_type == "Conv")
    int8 = quantize_int8(cnn, tmp_path / "int8.onnx", x_train[:64], keep_float=[conv])
    assert conv in {n.name for n in _graph_nodes(int8) if n.op_type == "Conv"}


def test_quantize_refuses_bad_arguments(cnn: Path, tmp_path: Path) -> None:
    x_train, _, _, _ = load_digits_split()
    with pytest.raises(ValueError, match="quant_format"):
        quantize_int8(cnn, tmp_path / "q.onnx", x_train[:8], quant_format="QInt4")
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(cnn, tmp_path / "q.onnx", x_train[:0])


def test_agreement_is_one_on_the_same_model_and_low_on_a_different_one(
    cnn: Path, always_zero: Path
) -> None:
    _, _, x_test, _ = load_digits_split()
    assert top1_agreement(cnn, cnn, x_test) == 1.0
    assert set(top1_classes(always_zero, x_test[:20])) == {0}
    different = top1_agreement(cnn, always_zero, x_test)
    assert different < 1.0
    assert different == pytest.approx(np.mean(top1_classes(cnn, x_test) == 0))
    with pytest.raises(ValueError, match="at least one input"):
        top1_agreement(cnn, cnn, x_test[:0])


def test_compare_latency_reports_medians_and_speedup(cnn: Path, always_zero: Path) -> None:
    _, _, x_test, _ = load_digits_split()
    result = compare_latency(cnn, always_zero, x_test, batch_size=8, repetitions=3)
    assert result.batch_size == 8
    assert result.baseline_s > 0 and result.candidate_s > 0
    assert result.speedup > 0


def _graph_nodes(path: Path) -> list[Any]:
    import onnx

    return list(onnx.load(str(path)).graph.node)


# -- images -----------------------------------------------------------------------------------

SPEC = ImagePreprocessing(crop_px=2, resize_shorter_px=4, mean=(127, 127, 127), std=(128,) * 3)


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_preprocess_crops_the_centre_and_normalises_per_channel() -> None:
    image = np.zeros((4, 8, 3), dtype=np.uint8)  # shorter side already 4: no resize
    image[:, :, 0] = np.arange(8, dtype=np.uint8)[None, :] * 30  # red grows to the right
    image[:, :, 1] = np.arange(4, dtype=np.uint8)[:, None] * 60  # green grows downwards
    image[:, :, 2] = 255
    chw = preprocess_image(image, SPEC)
    assert chw.shape == (3, 2, 2) and chw.dtype == np.float32
    np.testing.assert_array_equal(chw[0], (np.array([[90, 120], [90, 120]]) - 127) / 128)
    np.testing.assert_array_equal(chw[1], (np.array([[60, 60], [120, 120]]) - 127) / 128)
    np.testing.assert_array_equal(chw[2], np.ones((2, 2)))
    hwc = preprocess_image(image, ImagePreprocessing(2, 4, layout="NHWC"))
    np.testing.assert_array_equal(hwc, chw.transpose(1, 2, 0))


def test_preprocess_resizes_the_shorter_side_and_accepts_any_image_form() -> None:
    uniform = np.full((30, 50, 3), (255, 127, 0), dtype=np.uint8)
    spec = ImagePreprocessing(crop_px=8, resize_shorter_px=10)
    expected = np.broadcast_to(
        np.array([1.0, 0.0, -127 / 128], np.float32)[:, None, None], (3, 8, 8)
    )
    np.testing.assert_allclose(preprocess_image(uniform, spec), expected, atol=1e-6)
    np.testing.assert_allclose(
        preprocess_image(Image.fromarray(uniform), spec), expected, atol=1e-6
    )
    rgba = np.concatenate([uniform, np.zeros((30, 50, 1), np.uint8)], axis=2)
    np.testing.assert_allclose(preprocess_image(rgba, spec), expected, atol=1e-6)
    gray = preprocess_image(np.full((9, 40), 255, dtype=np.uint8), spec)
    np.testing.assert_allclose(gray, np.ones((3, 8, 8)), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_image(uniform.astype(np.float32), spec)
    with pytest.raises(ValueError, match="HxW"):
        preprocess_image(np.zeros((4, 4, 2), np.uint8), spec)


def test_decode_image_gives_rgb_and_explains_bad_data() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    decoded = decode_image(_png(rgb))
    assert decoded.mode == "RGB" and decoded.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(decoded), rgb)
    assert decode_image(_png(rgb[:, :, 0])).mode == "RGB"
    assert decode_image(_png(np.dstack([rgb, np.full((5, 7), 9, np.uint8)]))).mode == "RGB"
    with pytest.raises(ValueError, match="not a decodable image"):
        decode_image(b"not an image")
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"")
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(jpeg, format="JPEG")
    with pytest.raises(ValueError, match="not a decodable image"):
        decode_image(jpeg.getvalue()[:200])
    with pytest.raises(ValueError, match="larger than the limit of 30"):
        decode_image(_png(rgb), max_pixels=30)


def test_decode_image_refuses_a_decompression_bomb_from_its_header() -> None:
    out = io.BytesIO()
    Image.new("1", (9000, 9000)).save(out, format="PNG")  # 81 Mpx, a few kB
    with pytest.raises(ValueError, match="larger than the limit"):
        decode_image(out.getvalue())


def test_sample_photos_and_augmented_crops() -> None:
    photos = sample_images()
    assert {"chelsea", "coffee", "astronaut", "rocket"} <= set(photos)
    for photo in photos.values():
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    spec = ImagePreprocessing(crop_px=32, resize_shorter_px=37)
    crops = augmented_crops(list(photos.values()), spec, 6, seed=1)
    assert crops.shape == (6, 3, 32, 32) and crops.dtype == np.float32
    np.testing.assert_array_equal(crops, augmented_crops(list(photos.values()), spec, 6, seed=1))
    assert not np.array_equal(crops, augmented_crops(list(photos.values()), spec, 6, seed=2))
    assert crops.min() >= -127 / 128 and crops.max() <= 1.0


def test_augmented_photos_are_crops_of_the_photos_at_random_scales() -> None:
    photo = np.arange(60 * 80 * 3, dtype=np.uint32).reshape(60, 80, 3).astype(np.uint8)
    striped = np.repeat(np.arange(80, dtype=np.uint8)[None, :, None], 60, axis=0)
    striped = np.repeat(striped, 3, axis=2)  # column index as the value: shows the flips
    images = augmented_photos([photo, striped], 40, seed=1)
    assert len(images) == 40
    assert images[1].dtype == np.uint8 and images[1].shape[2] == 3
    sides = [min(image.shape[:2]) for image in images]
    assert min(sides) >= 60 * 0.5 / np.sqrt(4 / 3) - 1 and max(sides) <= 60
    assert len(set(sides)) > 10  # random scales
    for image in images:
        height, width = image.shape[:2]
        assert 0.7 <= width / height <= 1.4  # 3:4 to 4:3, give or take rounding
    columns = [image[0, :, 0].astype(int) for image in images[1::2]]  # crops of `striped`
    steps = {int(np.sign(np.diff(c)).mean()) for c in columns if len(c) > 1}
    assert steps == {-1, 1}  # both mirrored and upright crops
    again = augmented_photos([photo, striped], 40, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))
    other = augmented_photos([photo, striped], 40, seed=2)
    assert not all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(images, other, strict=True)
    )
    with pytest.raises(ValueError, match="at least one photo"):
        augmented_photos([], 1, seed=0)
    with pytest.raises(ValueError, match="min_side_fraction 0 must be in"):
        augmented_photos([photo], 1, seed=0, min_side_fraction=0)
