"""The real default repository served end to end: photos, pinned variants, measured accuracy."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import Server, start_server, stop_server
from rheostat.api.codec import RequestedOutput, decode_infer_response, encode_infer_request
from rheostat.repository import load_repository

pytestmark = pytest.mark.integration

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def server(default_repository: Path) -> Iterator[Server]:
    server = start_server(default_repository)
    yield server
    stop_server(server)


def infer(server: Server, model: str, inputs: list, **kwargs: object) -> httpx.Response:
    body, headers = encode_infer_request(inputs, binary=True, **kwargs)  # type: ignore[arg-type]
    return httpx.post(
        f"{server.url}/v2/models/{model}/infer", content=body, headers=headers, timeout=60
    )


def decoded(response: httpx.Response):  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    length = response.headers.get("Inference-Header-Content-Length")
    return decode_infer_response(response.content, int(length) if length else None)


def cat_jpeg() -> bytes:
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.chelsea()).save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_cat_photo_is_a_cat_on_every_variant(server: Server, default_repository: Path) -> None:
    family = load_repository(default_repository).families["efficientnet_lite"]
    top = RequestedOutput("logits", binary_data=False, classification=1)
    for variant in family.config.variants:
        result = decoded(
            infer(server, f"efficientnet_lite.{variant}", [("image", [cat_jpeg()])], outputs=[top])
        )
        label = result.outputs[0].data[0][0].decode()
        assert int(label.split(":")[1]) in CAT_CLASSES, (variant, label)
        assert "cat" in label


def test_image_family_has_input_size_variants_scored_against_lite2(
    default_repository: Path,
) -> None:
    config = load_repository(default_repository).families["efficientnet_lite"].config
    for px in (128, 160, 192):
        variant = config.variants[f"lite0_{px}"]
        assert variant.input.dims == (3, px, px)
        assert variant.preprocessing is not None and variant.preprocessing.crop_px == px
        assert variant.metadata["image_px"] == px
        assert f"lite0_{px}_int8" not in config.variants
    accuracy = {name: variant.accuracy for name, variant in config.variants.items()}
    assert accuracy["lite2"] == 1.0
    assert all(0 < a <= 1 for a in accuracy.values()), accuracy
    assert accuracy["lite0_128"] <= accuracy["lite0"], accuracy
    for variant in config.variants.values():
        assert "top-1 agreement with lite2 at 260 px" in variant.accuracy_source
        assert "augmented sample photos" in variant.accuracy_source
    assert "agreement with lite2" in config.description
    published = {
        name: variant.metadata["published_top1"]
        for name, variant in config.variants.items()
        if "published_top1" in variant.metadata
    }
    assert published == {"lite0": 0.751, "lite1": 0.767, "lite2": 0.775}  # fp32, native px


def test_small_frame_goes_to_the_small_variant(server: Server) -> None:
    from skimage import data

    frame = io.BytesIO()
    Image.fromarray(data.chelsea()).resize((192, 128)).save(frame, format="JPEG", quality=90)
    top = RequestedOutput("logits", binary_data=False, classification=1)
    model = "efficientnet_lite.lite0_128"
    result = decoded(infer(server, model, [("image", [frame.getvalue()])], outputs=[top]))
    assert result.parameters["variant"] == model
    label = result.outputs[0].data[0][0].decode()
    assert int(label.split(":")[1]) in CAT_CLASSES, label


def test_family_endpoint_takes_uint8_images_of_any_size(server: Server) -> None:
    from skimage import data

    for image in (data.chelsea(), data.chelsea()[::2, ::3], data.coffee()):
        result = decoded(infer(server, "efficientnet_lite", [("image", image[None])]))
        assert result.outputs[0].data.shape == (1, 1000)
        assert result.parameters["variant"].startswith("efficientnet_lite.")
    coffee = decoded(infer(server, "efficientnet_lite", [("image", data.coffee()[None])]))
    assert int(np.argmax(coffee.outputs[0].data[0])) in {504, 967, 968}  # cup, espresso, coffee mug


def test_pinned_variant_takes_its_preprocessed_tensor(
    server: Server, default_repository: Path
) -> None:
    from rheostat.lifecycle.images import decode_image, preprocess_image

    spec = (
        load_repository(default_repository).families["efficientnet_lite"].config.variants["lite0"]
    )
    assert spec.preprocessing is not None
    x = preprocess_image(decode_image(cat_jpeg()), spec.preprocessing)[None]
    result = decoded(infer(server, "efficientnet_lite.lite0", [("input", x)]))
    assert int(np.argmax(result.outputs[0].data[0])) in CAT_CLASSES
    wrong = infer(server, "efficientnet_lite.lite0", [("input", x[:, :, :100])])
    assert wrong.status_code == 400 and "expected [-1, 3, 224, 224]" in wrong.json()["error"]


def test_garbage_image_bytes_get_400(server: Server) -> None:
    response = infer(server, "efficientnet_lite", [("image", [b"not an image"])])
    assert response.status_code == 400
    assert "not a decodable image" in response.json()["error"]


def test_digits_accuracy_served_matches_the_measured_config(
    server: Server, default_repository: Path
) -> None:
    from rheostat.lifecycle.digits import load_digits_split

    _, _, x_test, y_test = load_digits_split()
    family = load_repository(default_repository).families["digits"]
    for variant, config in family.config.variants.items():
        predictions = []
        for start in range(0, len(x_test), 64):
            result = decoded(
                infer(server, f"digits.{variant}", [("input", x_test[start : start + 64])])
            )
            predictions.append(np.argmax(result.outputs[0].data, axis=1))
        accuracy = float(np.mean(np.concatenate(predictions) == y_test))
        assert accuracy == pytest.approx(config.accuracy, abs=1e-6), variant
