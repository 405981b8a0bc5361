"""Image decoding and preprocessing shared by the repository build and the server.

The server imports this module in its worker processes, so it depends on PIL and numpy only
(`sample_images` imports scikit-image lazily, and only the build and tests call it).

Preprocessing contract (`preprocess_image`), for an `ImagePreprocessing` spec:

1. the image becomes 8-bit RGB;
2. its shorter side is resized to `spec.resize_shorter_px` with bicubic filtering, the longer
   side in proportion (rounded to the nearest pixel);
3. the central `spec.crop_px` x `spec.crop_px` square is cut out (odd margins put the extra
   pixel on the right/bottom);
4. each channel becomes `(value - mean[c]) / std[c]` as float32;
5. the result is laid out CHW for `NCHW` or HWC for `NHWC` (no batch axis).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from rheostat.repository.schema import ImagePreprocessing

__all__ = [
    "MAX_IMAGE_PIXELS",
    "as_rgb_image",
    "augmented_crops",
    "augmented_photos",
    "center_crop",
    "decode_image",
    "normalize",
    "preprocess_image",
    "resize_shorter",
    "sample_images",
]

MAX_IMAGE_PIXELS = 40_000_000
"""The largest image (width x height) `decode_image` accepts."""

# PIL's own decompression-bomb guard, aligned with ours: it warns above MAX_IMAGE_PIXELS and
# raises above twice that before any pixel data is decoded. `decode_image` turns both into a
# ValueError, so a huge image is refused on its header alone.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an encoded image (JPEG, PNG, WebP, BMP, GIF, ...) into an RGB PIL image.

    EXIF orientation is applied; alpha is dropped; only the first frame of an animation is
    kept. Raises ValueError naming the problem when `data` is empty, is not a decodable image,
    is truncated, or has more than `max_pixels` pixels (checked from the header, before the
    pixel data is decoded).
    """
    if not data:
        raise ValueError("image data is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"image is larger than the limit of {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise ValueError(
            f"image data ({len(data)} bytes) is not a decodable image: unrecognised format "
            "(expected JPEG, PNG, WebP, BMP, GIF, TIFF, ...)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"image data ({len(data)} bytes) is not a decodable image: {exc}"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ValueError(
            f"image is {width}x{height} = {width * height} pixels, "
            f"larger than the limit of {max_pixels}"
        )
    try:
        image.load()
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        kind = image.format or "image"
        raise ValueError(
            f"{kind} data ({len(data)} bytes) is not a decodable image: {exc}"
        ) from None
    return rgb


def as_rgb_image(image: Image.Image | NDArray[np.uint8]) -> Image.Image:
    """A PIL RGB image from a PIL image of any mode or a uint8 array (HW, HW1, HW3 or HW4).

    Raises ValueError for arrays of another dtype or shape.
    """
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image array must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or 0 in array.shape:
        raise ValueError(f"image array must be HxW, HxWx1, HxWx3 or HxWx4; got {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array[:, :, :3]), mode="RGB")


def resize_shorter(image: Image.Image, shorter_px: int) -> Image.Image:
    """Resize (bicubic) so that the shorter side is exactly `shorter_px`, keeping the aspect."""
    width, height = image.size
    scale = shorter_px / min(width, height)
    if width <= height:
        size = (shorter_px, max(shorter_px, round(height * scale)))
    else:
        size = (max(shorter_px, round(width * scale)), shorter_px)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, crop_px: int) -> Image.Image:
    """The central `crop_px` square of an image whose sides are both >= `crop_px`."""
    width, height = image.size
    left, top = (width - crop_px) // 2, (height - crop_px) // 2
    return image.crop((left, top, left + crop_px, top + crop_px))


def normalize(rgb: NDArray[np.uint8], spec: ImagePreprocessing) -> NDArray[np.float32]:
    """`(rgb - mean) / std` per channel of an HWC uint8 array, laid out as `spec.layout` says."""
    mean = np.asarray(spec.mean, dtype=np.float32)
    scale = 1.0 / np.asarray(spec.std, dtype=np.float32)
    out = (rgb.astype(np.float32) - mean) * scale
    if spec.layout == "NCHW":
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out, dtype=np.float32)


def preprocess_image(
    image: Image.Image | NDArray[np.uint8], spec: ImagePreprocessing
) -> NDArray[np.float32]:
    """One model input (no batch axis) from an image, following the module's contract.

    `image` is a PIL image of any mode or a uint8 array (HW, HW1, HW3 or HW4, RGB order).
    Returns float32 (3, crop, crop) for NCHW or (crop, crop, 3) for NHWC.
    """
    resized = resize_shorter(as_rgb_image(image), spec.resize_shorter_px)
    cropped = center_crop(resized, spec.crop_px)
    return normalize(np.asarray(cropped, dtype=np.uint8), spec)


def augmented_crops(
    photos: Sequence[NDArray[np.uint8]], spec: ImagePreprocessing, count: int, *, seed: int
) -> NDArray[np.float32]:
    """`count` model inputs (N, ...) cut at random from `photos`, in turn, for quantization.

    Each is the photo resized (bicubic) so that its shorter side is uniformly drawn from
    [crop, 2 x crop], a randomly placed crop x crop square of that, mirrored with probability
    1/2, then normalised as `spec` says. The same arguments always give the same crops;
    different seeds give different crops.
    """
    if not photos:
        raise ValueError("augmented_crops needs at least one photo")
    rng = np.random.default_rng(seed)
    size = spec.crop_px
    out = []
    for i in range(count):
        image = resize_shorter(
            as_rgb_image(photos[i % len(photos)]), int(rng.integers(size, 2 * size + 1))
        )
        left = int(rng.integers(0, image.width - size + 1))
        top = int(rng.integers(0, image.height - size + 1))
        crop = image.crop((left, top, left + size, top + size))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(normalize(np.asarray(crop, dtype=np.uint8), spec))
    return np.stack(out)


def augmented_photos(
    photos: Sequence[NDArray[np.uint8]],
    count: int,
    *,
    seed: int,
    min_side_fraction: float = 0.5,
    max_aspect: float = 4 / 3,
) -> list[NDArray[np.uint8]]:
    """`count` uint8 RGB images (HWC) cut at random from `photos`, in turn, for any model.

    Unlike `augmented_crops`, nothing here depends on a model's input: each image is a crop
    of the photo at the photo's own resolution, its size a random scale of the photo (side
    uniform in [min_side_fraction, 1] x the photo's shorter side, aspect ratio log-uniform in
    [1/max_aspect, max_aspect], clipped to the photo), at a random place, mirrored with
    probability 1/2. Models of different input sizes can then score the very same pictures,
    each preprocessed its own way (`preprocess_image`). The same arguments always give the
    same images.
    """
    if not photos:
        raise ValueError("augmented_photos needs at least one photo")
    if not 0 < min_side_fraction <= 1 or max_aspect < 1:
        raise ValueError(
            f"min_side_fraction {min_side_fraction} must be in (0, 1] "
            f"and max_aspect {max_aspect} >= 1"
        )
    rng = np.random.default_rng(seed)
    rgb = [np.asarray(as_rgb_image(photo), dtype=np.uint8) for photo in photos]
    out = []
    for i in range(count):
        photo = rgb[i % len(rgb)]
        height, width = photo.shape[:2]
        side = rng.uniform(min_side_fraction, 1.0) * min(height, width)
        stretch = float(np.sqrt(np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect)))))
        crop_w = max(1, min(width, round(side * stretch)))
        crop_h = max(1, min(height, round(side / stretch)))
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        crop = photo[top : top + crop_h, left : left + crop_w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(np.ascontiguousarray(crop))
    return out


_SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")


def sample_images() -> dict[str, NDArray[np.uint8]]:
    """The natural RGB photographs bundled with scikit-image (no download), as uint8 HWC.

    Keys: chelsea (a cat), coffee (a cup of coffee), astronaut, rocket, motorcycle (the left
    view of `stereo_motorcycle`).
    """
    from skimage import data as skimage_data

    data: Any = skimage_data  # untyped
    loaders = {
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "astronaut": data.astronaut,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
    }
    return {name: np.ascontiguousarray(loaders[name](), dtype=np.uint8) for name in _SAMPLES}
