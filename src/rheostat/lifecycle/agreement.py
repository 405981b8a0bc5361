"""Accuracy without labels: top-1 agreement with a reference model on shared images.

Where no labelled test set is at hand, a variant's accuracy can be estimated as the fraction
of a fixed set of images on which its top-1 class equals that of a reference model (the
most accurate variant), as Jellyfish scores its input-size variants against a reference
model. Every model sees the same uint8 images (`images.augmented_photos`), each preprocessed
by that model's own spec, so that variants with different input sizes are compared on the
same pictures; the reference scores 1 by definition.

`agreement(..., jpeg_quality=q)` scores a variant on what an edge client would send it: each
image scaled to the variant's input size and JPEG-encoded at quality `q` by the client's own
`encode_frame`, then decoded and preprocessed as the server does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rheostat.client import encode_frame
from rheostat.lifecycle.images import decode_image, preprocess_image
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
    _sent: dict[tuple[int, int], tuple[NDArray[np.uint8], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )  # (size, quality) -> the images as a client sends them, decoded

    @classmethod
    def measure(
        cls, reference: Path, spec: ImagePreprocessing, images: Sequence[NDArray[np.uint8]]
    ) -> AgreementSet:
        """The set of `images` scored against the model at `reference` (input as `spec`)."""
        return cls(tuple(images), top1_on_images(reference, images, spec))

    def agreement(
        self, model: Path, spec: ImagePreprocessing, jpeg_quality: int | None = None
    ) -> float:
        """Fraction of the images (0..1) on which `model` (input as `spec`) picks the
        reference's class; with `jpeg_quality`, on the images as a client sends them."""
        images = self.images if jpeg_quality is None else self.sent(spec, jpeg_quality)
        return float(np.mean(top1_on_images(model, images, spec) == self.reference))

    def sent(self, spec: ImagePreprocessing, quality: int) -> tuple[NDArray[np.uint8], ...]:
        """The images as an edge client sends them to a variant of input `spec`: scaled to
        its input size, JPEG at `quality` (decoded again)."""
        key = (spec.resize_shorter_px, quality)
        if key not in self._sent:
            self._sent[key] = tuple(
                np.asarray(decode_image(encode_frame(image, key[0], quality)[0]), np.uint8)
                for image in self.images
            )
        return self._sent[key]
