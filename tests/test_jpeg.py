"""The JPEG fast path: what it takes, what it leaves to Pillow, and that both agree."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from pyserving import jpeg
from pyserving.errors import InvalidInput
from pyserving.preprocess import decode_image, decode_image_pillow
from tests.conftest import encode
from tests.photos import jpeg as photo_jpeg
from tests.photos import variant


def corners(width: int = 48, height: int = 32) -> np.ndarray:
    """Four differently coloured quarters and a gradient: every turn and flip looks different."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[: height // 2, : width // 2] = (230, 20, 20)
    array[: height // 2, width // 2 :] = (20, 230, 20)
    array[height // 2 :, : width // 2] = (20, 20, 230)
    array[height // 2 :, width // 2 :] = (230, 230, 20)
    array[..., 2] = np.clip(array[..., 2].astype(int) + np.arange(width) // 2, 0, 255)
    return array


def with_orientation(array: np.ndarray, orientation: int, **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", exif=exif, quality=95, **options)
    return buffer.getvalue()


def fast(data: bytes, width: int, height: int, resize: str = "bilinear") -> np.ndarray | None:
    """The fast path alone: None where it leaves the image to Pillow."""
    return jpeg.decode(data, Image.open(io.BytesIO(data)), (width, height), resize)


def test_the_fast_path_is_installed_with_the_server() -> None:
    # Both packages are dependencies of the serving install; without them the rest of this
    # file would only test Pillow against itself.
    assert jpeg.describe().startswith("images: JPEG decoded with simplejpeg ")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_matches_pillow_exactly(orientation: int) -> None:
    data = with_orientation(corners(), orientation)
    displayed = (32, 48) if orientation >= 5 else (48, 32)  # (w, h) upright
    out = fast(data, *displayed)
    assert out is not None
    # No resize at the displayed size, so only the decode and the turn are compared.
    assert np.array_equal(out, decode_image_pillow(data, displayed[1], displayed[0]))
    assert np.array_equal(decode_image(data, displayed[1], displayed[0]), out)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_resized_stays_within_one_level(orientation: int) -> None:
    data = with_orientation(np.repeat(np.repeat(corners(), 4, 0), 4, 1), orientation)
    out = fast(data, 40, 30)
    assert out is not None and out.shape == (30, 40, 3) and out.flags.c_contiguous
    reference = decode_image_pillow(data, 30, 40).astype(int)
    assert np.abs(out.astype(int) - reference).max() <= 1


@pytest.mark.parametrize("index", range(0, 40, 3))
def test_real_photos_stay_within_one_level_of_pillow(index: int) -> None:
    data = photo_jpeg(index)  # 160 to 1920 pixels wide: enlarged as well as reduced
    out = fast(data, 224, 224)
    assert out is not None
    reference = decode_image_pillow(data, 224, 224).astype(int)
    assert np.abs(out.astype(int) - reference).max() <= 1


def test_real_photos_differ_from_pillow_on_few_values() -> None:
    # Same decoded pixels, same passes in the same order: only the resize coefficients'
    # rounding is left (about 0.15% of values; both passes in one call made it 12%).
    differing = total = 0
    for index in range(40):
        data = photo_jpeg(index)
        out = fast(data, 224, 224)
        assert out is not None
        differing += int(np.count_nonzero(out != decode_image_pillow(data, 224, 224)))
        total += out.size
    assert differing < 0.005 * total


@pytest.mark.parametrize("orientation", range(1, 9))
def test_turned_photos_differ_from_pillow_on_few_values(orientation: int) -> None:
    # Pillow turns first and resizes the turned pixels; the fast path resizes as stored,
    # so for 5 to 8 (a quarter turn) its passes swap axes as well as order.
    differing = total = 0
    for index in range(12):  # shrunk and enlarged, wider and taller than the target
        _, image, _ = variant(index)
        data = with_orientation(np.asarray(image), orientation)
        out = fast(data, 224, 224)
        assert out is not None
        differing += int(np.count_nonzero(out != decode_image_pillow(data, 224, 224)))
        total += out.size
    assert differing < 0.005 * total


def test_decoded_pixels_are_pillows_exactly() -> None:
    # Before the resize: libjpeg-turbo at Pillow's draft scale gives Pillow's pixels.
    import simplejpeg

    for index in range(0, 40, 4):
        data = photo_jpeg(index)
        image = Image.open(io.BytesIO(data))
        scale = jpeg.draft_scale(image.size, (224, 224))
        w, h = -(-image.size[0] // scale), -(-image.size[1] // scale)
        ours = simplejpeg.decode_jpeg(data, "RGB", min_height=h, min_width=w, min_factor=scale)
        image.draft("RGB", (224, 224))
        assert np.array_equal(ours, np.asarray(image.convert("RGB")))


def pillow_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def test_vertical_first_is_the_order_pillow_resamples_in() -> None:
    # Pillow rounds to 8 bits between its two passes, so on random pixels its resize
    # equals exactly one of the two orders; `vertical_first` must name that one.
    rng = np.random.default_rng(7)
    orders = set()
    for _ in range(150):
        w, h, width, height = (int(n) for n in rng.integers(4, 400, 4))
        if w == width or h == height:
            continue
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        first = (w, height) if jpeg.vertical_first((w, h), (width, height)) else (width, h)
        two_passes = pillow_resize(pillow_resize(pixels, first), (width, height))
        assert np.array_equal(pillow_resize(pixels, (width, height)), two_passes), (w, h)
        orders.add(first[0] == w)
    # Both orders were taken where this Pillow takes both (Pillow 11 never goes vertical first).
    assert orders == ({True, False} if jpeg._pillow_may_go_vertical_first() else {False})


def test_large_jpeg_is_decoded_at_pillows_draft_scale() -> None:
    data = encode(np.tile(corners(), (94, 84, 1)), "JPEG")  # 4032×3008: decoded at 1/8
    out = fast(data, 224, 224)
    assert out is not None
    assert np.abs(out.astype(int) - decode_image_pillow(data, 224, 224).astype(int)).max() <= 1


@pytest.mark.parametrize(
    "options", [{"progressive": True}, {"subsampling": 0}, {"subsampling": 2}, {"quality": 30}]
)
def test_progressive_and_subsampled_jpegs_take_the_fast_path(options: dict[str, object]) -> None:
    data = encode(np.repeat(np.repeat(corners(), 3, 0), 3, 1), "JPEG", **options)
    out = fast(data, 50, 40)
    assert out is not None
    assert np.abs(out.astype(int) - decode_image_pillow(data, 40, 50).astype(int)).max() <= 1


def test_greyscale_jpeg_becomes_grey_rgb() -> None:
    grey = Image.fromarray(corners()).convert("L")
    buffer = io.BytesIO()
    grey.save(buffer, "JPEG")
    out = fast(buffer.getvalue(), 48, 32)
    assert out is not None
    assert np.array_equal(out, decode_image_pillow(buffer.getvalue(), 32, 48))
    assert np.array_equal(out[..., 0], out[..., 2])


def cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(corners()).convert("CMYK").save(buffer, "JPEG")
    return buffer.getvalue()


def png() -> bytes:
    return encode(corners(), "PNG")


@pytest.mark.parametrize(
    ("data", "resize"),
    [
        (cmyk_jpeg(), "bilinear"),  # CMYK and YCCK: Pillow undoes Adobe's inverted ink
        (png(), "bilinear"),  # only JPEG takes the fast path
        # Other filters than bilinear: see jpeg.FILTERS.
        (encode(corners(), "JPEG"), "nearest"),
        (encode(corners(), "JPEG"), "bicubic"),
        (encode(corners(), "JPEG"), "lanczos"),
    ],
)
def test_what_the_fast_path_leaves_to_pillow(data: bytes, resize: str) -> None:
    assert fast(data, 24, 16, resize) is None
    assert np.array_equal(
        decode_image(data, 16, 24, resize), decode_image_pillow(data, 16, 24, resize)
    )


def test_truncated_jpeg_gets_pillows_error_not_a_grey_half() -> None:
    data = photo_jpeg(3)
    cut = data[: len(data) // 2]
    assert fast(cut, 224, 224) is None  # libjpeg would pad it with grey; strict refuses
    with pytest.raises(InvalidInput) as new:
        decode_image(cut, 224, 224)
    with pytest.raises(InvalidInput) as old:
        decode_image_pillow(cut, 224, 224)
    assert str(new.value) == str(old.value)


def test_corrupt_scan_data_is_pillows_to_judge() -> None:
    data = bytearray(photo_jpeg(5))
    start = data.index(b"\xff\xda") + 40  # inside the first scan's entropy-coded data
    data[start : start + 64] = bytes(range(64))
    corrupt = bytes(data)
    assert fast(corrupt, 224, 224) is None

    def outcome(decode: Callable[[bytes, int, int], np.ndarray]) -> np.ndarray | str:
        try:
            return decode(corrupt, 224, 224)
        except InvalidInput as exc:
            return str(exc)

    old, new = outcome(decode_image_pillow), outcome(decode_image)
    if isinstance(old, str) or isinstance(new, str):
        assert new == old
    else:
        assert np.array_equal(new, old)


def test_twelve_bit_jpeg_gets_the_same_error_as_before() -> None:
    data = bytearray(encode(corners(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 4] = 12  # the frame's sample precision
    with pytest.raises(InvalidInput) as new:
        decode_image(bytes(data), 16, 24)
    with pytest.raises(InvalidInput) as old:
        decode_image_pillow(bytes(data), 16, 24)
    assert str(new.value) == str(old.value)


def test_size_limits_apply_before_the_fast_path() -> None:
    data = encode(corners(), "JPEG")
    with pytest.raises(InvalidInput, match="1,536 pixels, over the limit of 1,535"):
        decode_image(data, 8, 8, max_pixels=1_535)


def test_without_its_packages_jpegs_go_to_pillow_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = encode(corners(), "JPEG")
    jpeg._packages.cache_clear()
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # import fails
    try:
        with caplog.at_level(logging.WARNING, logger="pyserving.jpeg"):
            first = decode_image(data, 16, 24)
            decode_image(data, 16, 24)
        assert np.array_equal(first, decode_image_pillow(data, 16, 24))
        said = [r.getMessage() for r in caplog.records if r.name == "pyserving.jpeg"]
        assert said == ["images: simplejpeg is not installed; JPEGs are decoded with Pillow"]
        assert "with Pillow" in jpeg.describe()
    finally:
        monkeypatch.undo()
        jpeg._packages.cache_clear()
    assert fast(data, 24, 16) is not None


def test_concurrent_decodes_each_get_their_own_answer() -> None:
    from concurrent.futures import ThreadPoolExecutor

    photos = [photo_jpeg(i) for i in range(8)]
    expected = [decode_image(p, 224, 224) for p in photos]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: decode_image(p, 224, 224), photos * 4))
    for i, out in enumerate(got):
        assert np.array_equal(out, expected[i % len(photos)])
