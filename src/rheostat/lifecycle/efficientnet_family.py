"""The `efficientnet_lite` family: EfficientNet-Lite at several input sizes, scored by agreement.

The variants and their export are `rheostat.lifecycle.efficientnet`'s. Accuracy: published
ImageNet top-1 exists only at the native sizes, and no labelled images are at hand. Every
variant's accuracy is therefore its top-1 agreement with `REFERENCE` (lite2 at 260 px, the
most accurate variant) on `AGREEMENT_IMAGES` augmented sample photos, each preprocessed by
the variant's own spec (`rheostat.lifecycle.agreement`), as Jellyfish scores variants against
its reference model; lite2 scores 1 by definition. The native fp32 variants keep their
published top-1 in their metadata (`published_top1`). The int8 copies are kept or refused on
their agreement with their own fp32 model (`MIN_AGREEMENT`), but report agreement with
`REFERENCE` like every other variant.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rheostat.lifecycle.agreement import AgreementSet
from rheostat.lifecycle.efficientnet import (
    LITE_VARIANTS,
    SIZE_VARIANTS_PX,
    export_lite,
    imagenet_labels,
    lite_preprocessing,
    model_path,
    quantize_lite,
)
from rheostat.lifecycle.images import augmented_photos, sample_images
from rheostat.repository.loader import write_family_config
from rheostat.repository.schema import (
    BatchPolicyName,
    DynamicBatching,
    FamilyConfig,
    InputKind,
    QueuePolicy,
    TensorSpec,
    VariantConfig,
)

__all__ = [
    "ACCURACY_SOURCE",
    "AGREEMENT_IMAGES",
    "REFERENCE",
    "build_efficientnet_family",
    "efficientnet_family_config",
]

FAMILY = "efficientnet_lite"
REFERENCE = "lite2"  # the most accurate variant: every accuracy is agreement with it
AGREEMENT_IMAGES = 300
AGREEMENT_SEED = 3
REFERENCE_PX = LITE_VARIANTS[REFERENCE].image_px
JPEG_QUALITIES = (85, 50, 30)
"""The qualities each variant is also scored at, on the images as an edge client sends them
(scaled to its input size, JPEG): the client mapping's second knob, fewer bytes for some
accuracy (`VariantConfig.jpeg_accuracy`)."""
ACCURACY_SOURCE = (
    f"measured: top-1 agreement with {REFERENCE} at {REFERENCE_PX} px on {AGREEMENT_IMAGES} "
    "augmented sample photos (random crops at random scales, horizontal flips), each "
    "preprocessed by this variant's own spec, as Jellyfish scores variants against its "
    "reference model"
)


def _fp32_metadata(name: str, exported: dict[str, Any]) -> dict[str, Any]:
    """The export's metadata, plus the published top-1 (native sizes) or the weights' origin."""
    variant = LITE_VARIANTS[name]
    if variant.native:
        return {
            **exported,
            "published_top1": variant.published_top1,
            "published_top1_source": f"ImageNet top-1 of {variant.title} "
            f"at {variant.native_px} px (TensorFlow model garden)",
        }
    return {**exported, "weights_of": f"{variant.title} ({variant.native_px} px)"}


@dataclass(frozen=True)
class _Built:
    """A variant written into the family folder, its accuracy not measured yet."""

    name: str
    image_px: int
    metadata: dict[str, Any]


def efficientnet_family_config(variants: dict[str, VariantConfig]) -> FamilyConfig:
    """The `efficientnet_lite` FamilyConfig holding `variants`."""
    return FamilyConfig(
        name=FAMILY,
        description=(
            "ImageNet-1k classifiers EfficientNet-Lite0 at "
            + ", ".join(str(px) for px in (*SIZE_VARIANTS_PX, LITE_VARIANTS["lite0"].image_px))
            + " px, Lite1 at 240 px, Lite2 at 260 px (fp32, and int8 at the native sizes); "
            f"accuracy: top-1 agreement with {REFERENCE} at {REFERENCE_PX} px on "
            f"{AGREEMENT_IMAGES} "
            "augmented sample photos (crops, flips, scales), as Jellyfish scores against its "
            "reference model"
        ),
        max_batch_size=8,
        input_kind=InputKind.IMAGE,
        output=TensorSpec("logits", "TYPE_FP32", (1000,)),
        variants=variants,
        slo_ms=500.0,
        labels=imagenet_labels(),
        dynamic_batching=DynamicBatching(
            policy=BatchPolicyName.DEADLINE_AWARE,
            max_queue_delay_microseconds=5000,
            preferred_batch_size=(4, 8),
            default_queue_policy=QueuePolicy(max_queue_size=64),
            # batches of 60-250 ms on a core shared with the front end vary by a few
            # percent: keep 10 ms before a deadline so admitted requests finish in time
            latency_margin_microseconds=10_000,
        ),
    )


def _build_variant(
    name: str,
    family_dir: Path,
    photos: dict[str, NDArray[np.uint8]],
    quantize: bool,
    say: Callable[[str], None],
) -> tuple[list[_Built], dict[str, dict[str, Any]]]:
    """Export `name` (and quantize it at its native size); return what was built and the
    report entries."""
    say(f"exporting {name} ...")
    variant = LITE_VARIANTS[name]
    path = model_path(family_dir, name)
    exported = export_lite(name, path, photos["chelsea"])
    built = [_Built(name, variant.image_px, _fp32_metadata(name, exported))]
    report: dict[str, dict[str, Any]] = {name: {}}
    if quantize and variant.native:
        say(f"quantizing {name} to int8 ...")
        int8, report[f"{name}_int8"] = quantize_lite(name, path, family_dir, photos)
        if int8 is not None:
            built.append(_Built(f"{name}_int8", variant.image_px, int8))
    return built, report


def _agreement_set(
    family_dir: Path, photos: dict[str, NDArray[np.uint8]], *, built: bool
) -> AgreementSet:
    """The agreement images and REFERENCE's classes for them; REFERENCE is read from
    `family_dir` when `built`, else exported to a temporary folder first."""
    images = augmented_photos(list(photos.values()), AGREEMENT_IMAGES, seed=AGREEMENT_SEED)
    spec = lite_preprocessing(REFERENCE_PX)
    if built:
        return AgreementSet.measure(model_path(family_dir, REFERENCE), spec, images)
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(Path(tmp), REFERENCE)
        export_lite(REFERENCE, path, photos["chelsea"])
        return AgreementSet.measure(path, spec, images)


def _scored(built: _Built, family_dir: Path, scoring: AgreementSet) -> VariantConfig:
    """The config of a built variant, its accuracy its top-1 agreement with REFERENCE."""
    spec = lite_preprocessing(built.image_px)
    path = model_path(family_dir, built.name)
    agreement = scoring.agreement(path, spec)
    return VariantConfig(
        name=built.name,
        accuracy=round(agreement, 4),
        accuracy_source=ACCURACY_SOURCE,
        input=TensorSpec("input", "TYPE_FP32", (3, built.image_px, built.image_px)),
        preprocessing=spec,
        metadata=built.metadata,
        jpeg_accuracy={q: round(scoring.agreement(path, spec, q), 4) for q in JPEG_QUALITIES},
    )


def build_efficientnet_family(
    family_dir: Path,
    *,
    variants: Sequence[str] | None = None,
    quantize: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export `variants` (default: all of LITE_VARIANTS) and, at the native sizes, their int8
    copies into `family_dir`, then score each by top-1 agreement with REFERENCE.

    Writes config.yaml and labels.txt; returns a report per variant (metadata, accuracy,
    and for each int8 attempt its agreement with fp32, speedups and whether it was
    registered). Raises ValueError for an unknown variant, RuntimeError when an export fails
    its checks.
    """
    names = tuple(LITE_VARIANTS if variants is None else variants)
    unknown = sorted(set(names) - set(LITE_VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; expected some of {list(LITE_VARIANTS)}")
    say = progress or _silent
    photos = sample_images()
    built: list[_Built] = []
    report: dict[str, Any] = {}
    for name in names:
        made, entries = _build_variant(name, family_dir, photos, quantize, say)
        built += made
        report.update(entries)
    say(f"scoring {len(built)} variants by top-1 agreement with {REFERENCE} ...")
    scoring = _agreement_set(family_dir, photos, built=REFERENCE in names)
    configs = {b.name: _scored(b, family_dir, scoring) for b in built}
    for config in configs.values():
        report[config.name].update(
            accuracy=config.accuracy, accuracy_source=config.accuracy_source, **config.metadata
        )
    write_family_config(family_dir, efficientnet_family_config(configs))
    return report


def _silent(_message: str) -> None:
    """The default progress callback: says nothing."""
