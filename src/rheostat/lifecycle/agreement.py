"""Accuracy without labels: top-1 agreement with a reference model on shared images.

Where no labelled test set is at hand, a variant's accuracy can be estimated as the fraction
of a fixed set of images on which its top-1 class equals that of a reference model (the
most accurate variant), as Jellyfish scores its input-size variants against a reference
model. Every model sees the same uint8 images (`images.augmented_photos`), each preprocessed
by that model's own spec, so that variants with different input sizes are compared on the
same pictures; the reference scores 1 by definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rheostat.lifecycle.images import preprocess_image
from rheostat.lifecycle.quantize import top1_classes
from rheostat.repository.schema import ImagePreprocessing

__all__ = ["AgreementSet", "top1_on_images"]


def top1_on_images(
    model: Path, images: Sequence[NDArray[np.uint8]], spec: ImagePreprocessing
) -> NDArray[np.int64]:
    """The arg-max class of `model` for each image, preprocessed as `spec` says."""
    if not images:
        raise ValueError("top1_on_images needs at least one image")
    return top1_classes(model, np.stack([preprocess_image(image, spec) for image in images]))


@dataclass(frozen=True)
class AgreementSet:
    """Images to score models on, and the reference model's top-1 class for each."""

    images: tuple[NDArray[np.uint8], ...]
    reference: NDArray[np.int64]

    @classmethod
    def measure(
        cls, reference: Path, spec: ImagePreprocessing, images: Sequence[NDArray[np.uint8]]
    ) -> AgreementSet:
        """The set of `images` scored against the model at `reference` (input as `spec`)."""
        return cls(tuple(images), top1_on_images(reference, images, spec))

    def agreement(self, model: Path, spec: ImagePreprocessing) -> float:
        """Fraction of the images (0..1) on which `model` (input as `spec`) picks the
        reference's class."""
        return float(np.mean(top1_on_images(model, self.images, spec) == self.reference))
