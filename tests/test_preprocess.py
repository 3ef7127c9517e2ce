import io

import numpy as np
import pytest
from PIL import Image

from pyserving.errors import InvalidInput
from pyserving.preprocess import decode_image, feature_rows, features_vector, open_image
from tests.conftest import encode


def halves(width: int = 64, height: int = 32) -> np.ndarray:
    """Left half red, right half blue."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    array[:, width // 2 :] = (0, 0, 255)
    return array


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_accepted_formats_decode_to_rgb_at_target_size(fmt: str) -> None:
    out = decode_image(encode(halves(), fmt), 16, 24)
    assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    assert out[8, 2, 0] > 200 and out[8, 2, 2] < 60  # left stays red
    assert out[8, 21, 2] > 200 and out[8, 21, 0] < 60  # right stays blue


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "I;16"])
def test_other_modes_become_rgb(mode: str) -> None:
    image = Image.fromarray(halves()).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = image.convert("I;16")
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    out = decode_image(buffer.getvalue(), 8, 8)
    assert out.shape == (8, 8, 3)


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    assert decode_image(buffer.getvalue(), 8, 8).min() == 255


def test_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buffer.getvalue(), 8, 8)
    assert out[4, 4, 0] > 200 and out[4, 4, 1] < 60


def test_exif_orientation_is_applied() -> None:
    # Stored landscape red|blue; orientation 6 means "rotate 90° clockwise to display".
    image = Image.fromarray(halves(64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    out = decode_image(buffer.getvalue(), 64, 32)
    # Displayed upright it is portrait: red on top, blue at the bottom.
    assert out[4, 16, 0] > 200 and out[4, 16, 2] < 60
    assert out[60, 16, 2] > 200 and out[60, 16, 0] < 60


@pytest.mark.parametrize(
    ("size", "expected"), [((4000, 3000), (500, 375)), ((640, 480), (320, 240))]
)
def test_jpeg_is_opened_in_draft_mode_never_below_the_target(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    data = encode(np.zeros((size[1], size[0], 3), dtype=np.uint8), "JPEG")
    assert open_image(data, 224, 224, 50_000_000).size == expected
    assert decode_image(data, 224, 224).shape == (224, 224, 3)


def test_draft_mode_keeps_small_images_whole() -> None:
    data = encode(np.zeros((300, 400, 3), dtype=np.uint8), "JPEG")
    assert open_image(data, 224, 224, 50_000_000).size == (400, 300)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"GIF89a" + b"\x00" * 3, "could not decode"),
        (b"%PDF-1.4 not an image", "expected JPEG, PNG, WebP, GIF or BMP"),
    ],
)
def test_undecodable_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_image(data, 8, 8)


def test_truncated_jpeg_is_refused() -> None:
    data = encode(np.full((256, 256, 3), 120, dtype=np.uint8), "JPEG")
    with pytest.raises(InvalidInput, match="could not decode"):
        decode_image(data[: len(data) // 2], 8, 8)


def test_pixel_limit() -> None:
    data = encode(np.zeros((100, 100, 3), dtype=np.uint8), "PNG")
    with pytest.raises(InvalidInput, match="10,000 pixels, over the limit of 9,999"):
        decode_image(data, 8, 8, max_pixels=9_999)
    assert decode_image(data, 8, 8, max_pixels=10_000).shape == (8, 8, 3)


def test_extreme_aspect_ratio_is_refused() -> None:
    with pytest.raises(InvalidInput, match="1×50000"):
        decode_image(encode(np.zeros((50000, 1, 3), dtype=np.uint8), "PNG"), 8, 8)


def test_features_are_ordered_and_checked() -> None:
    names = ("a", "b")
    assert features_vector({"b": 2.0, "a": 1.0}, names).tolist() == [1.0, 2.0]
    with pytest.raises(InvalidInput, match="missing feature.*b"):
        features_vector({"a": 1.0}, names)
    with pytest.raises(InvalidInput, match="unknown feature.*c"):
        features_vector({"a": 1.0, "b": 1.0, "c": 1.0}, names)
    with pytest.raises(InvalidInput, match="b must be finite"):
        features_vector({"a": 1.0, "b": float("nan")}, names)


def test_feature_rows_take_a_matrix_or_named_or_ordered_rows() -> None:
    names = ("a", "b")
    expected = [[1.0, 2.0], [3.0, 4.0]]
    assert feature_rows(np.array(expected), names).tolist() == expected
    assert feature_rows([{"b": 2.0, "a": 1.0}, [3.0, 4.0]], names).tolist() == expected
    assert feature_rows([[1, 2]], names).dtype == np.float32
    with pytest.raises(InvalidInput, match="missing feature.*b"):
        feature_rows([{"a": 1.0}], names)
    with pytest.raises(InvalidInput, match=r"2 numbers \(a, b\), got shape \[3\]"):
        feature_rows([[1.0, 2.0, 3.0]], names)
    with pytest.raises(InvalidInput, match=r"shape \[N, 2\]"):
        feature_rows(np.zeros(2), names)
    with pytest.raises(InvalidInput, match="finite"):
        feature_rows(np.array([[1.0, np.inf]]), names)
