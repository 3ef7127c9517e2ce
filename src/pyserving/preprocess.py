"""Decode and resize one encoded image into the uint8 array a servable takes.

Plain synchronous functions: callers run them in the server's thread pool, never on the
event loop. Normalisation is not done here; it lives inside the ONNX graph.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pyserving import jpeg
from pyserving.errors import InvalidInput

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
ACCEPTED_TEXT = "expected JPEG, PNG, WebP, GIF or BMP"
MAX_ASPECT_RATIO = 100
# Feature rows: a [N, F] matrix, or rows that are each named features or F numbers in order.
FeatureRows = np.ndarray | Sequence[Mapping[str, float] | Sequence[float]]

_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

# We enforce our own pixel limit before decoding; Pillow's global one would fire at a
# different threshold with a warning or an error of its own.
Image.MAX_IMAGE_PIXELS = None


def decode_image(
    data: bytes,
    height: int,
    width: int,
    resize: str = "bilinear",
    max_pixels: int = 50_000_000,
) -> np.ndarray:
    """Decode `data` to RGB, apply EXIF orientation and resize to `height`×`width`.

    Returns a C-contiguous uint8 array of shape (height, width, 3).
    Raises InvalidInput saying what was wrong with the bytes.
    A plain JPEG takes the fast path (`jpeg.decode`); other images, and any JPEG that
    path turns down, take `decode_image_pillow`'s way.
    """
    return _decode(data, height, width, resize, max_pixels, fast=True)


def decode_image_pillow(
    data: bytes,
    height: int,
    width: int,
    resize: str = "bilinear",
    max_pixels: int = 50_000_000,
) -> np.ndarray:
    """`decode_image` with Pillow alone: the fallback, and the reference for the fast path."""
    return _decode(data, height, width, resize, max_pixels, fast=False)


def _decode(
    data: bytes, height: int, width: int, resize: str, max_pixels: int, fast: bool
) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = _open_checked(data, max_pixels)
            if fast:
                array = jpeg.decode(data, image, (width, height), resize)
                if array is not None:
                    return array
            _draft(image, height, width)
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
            if image.size != (width, height):
                image = image.resize((width, height), _FILTERS[resize])
            return np.asarray(image, dtype=np.uint8)
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(_describe(data, exc)) from exc


def open_image(data: bytes, height: int, width: int, max_pixels: int) -> Image.Image:
    """Open `data` lazily, check its size, and for JPEG pick libjpeg's DCT scale.

    Draft mode decodes at 1/2, 1/4 or 1/8 size, never below the target, so a 12 MP photo
    costs about what a 1 MP one does. Nothing is decoded until `load()`.
    """
    image = _open_checked(data, max_pixels)
    _draft(image, height, width)
    return image


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Pillow's lazy open (the header only) and the size checks, before any pixel."""
    if not data:
        raise InvalidInput(f"the image is empty (0 bytes): {ACCEPTED_TEXT}")
    image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    _check_size(image, max_pixels)
    return image


def _draft(image: Image.Image, height: int, width: int) -> None:
    if image.format == "JPEG":
        image.draft("RGB", (width, height))


def _check_size(image: Image.Image, max_pixels: int) -> None:
    w, h = image.size
    if w < 1 or h < 1:
        raise InvalidInput(f"the image is {w}×{h} pixels: it has no pixels to classify")
    if w * h > max_pixels:
        raise InvalidInput(
            f"the image is {w}×{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
            "(a decompression bomb?); send a smaller image"
        )
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise InvalidInput(
            f"the image is {w}×{h} pixels: sides more than {MAX_ASPECT_RATIO}:1 apart "
            "cannot be resized to the model's input in a meaningful way"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as a person sees them on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def describe_decoders() -> str:
    """One line for the server's log: which decoder reads which images."""
    return jpeg.describe()


def _describe(data: bytes, exc: BaseException) -> str:
    head = data[:8]
    reason = "not a format we read" if isinstance(exc, UnidentifiedImageError) else str(exc)
    return (
        f"could not decode image ({len(data):,} bytes, starts with {head!r}): "
        f"{ACCEPTED_TEXT} ({reason})"
    )


def features_vector(features: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    """Order named features as the model expects them. Raises InvalidInput naming the problem."""
    missing = [n for n in names if n not in features]
    if missing:
        raise InvalidInput(
            f"missing feature(s) {', '.join(missing)}; the model takes {', '.join(names)}"
        )
    unknown = sorted(set(features) - set(names))
    if unknown:
        raise InvalidInput(
            f"unknown feature(s) {', '.join(unknown)}; the model takes {', '.join(names)}"
        )
    vector = _numbers([features[n] for n in names], "features")
    bad = [n for n, v in zip(names, vector, strict=True) if not np.isfinite(v)]
    if bad:
        raise InvalidInput(f"feature(s) {', '.join(bad)} must be finite numbers")
    return vector


def feature_rows(features: FeatureRows, names: tuple[str, ...]) -> np.ndarray:
    """A float32 [N, F] matrix in the model's feature order; named rows are checked by name."""
    if not isinstance(features, np.ndarray):
        if isinstance(features, str | bytes | Mapping) or not isinstance(features, Sequence):
            raise InvalidInput(
                f"features must be rows of {len(names)} numbers ({', '.join(names)}), "
                f"got {type(features).__name__}"
            )
        rows = [
            features_vector(dict(row), names)
            if isinstance(row, Mapping)
            else _numbers(row, "each feature row")
            for row in features
        ]
        if any(row.shape != (len(names),) for row in rows):
            bad = next(list(row.shape) for row in rows if row.shape != (len(names),))
            raise InvalidInput(
                f"each feature row must hold {len(names)} numbers ({', '.join(names)}), "
                f"got shape {bad}"
            )
        features = np.stack(rows) if rows else np.zeros((0, len(names)), np.float32)
    if features.ndim != 2 or features.shape[1] != len(names):
        raise InvalidInput(
            f"features must have shape [N, {len(names)}] ({', '.join(names)}), "
            f"got {list(features.shape)}"
        )
    rows_out = features.astype(np.float32)
    if not np.all(np.isfinite(rows_out)):
        raise InvalidInput("features must be finite numbers (no NaN or infinity)")
    return rows_out


def _numbers(values: Any, what: str) -> np.ndarray:
    """`values` as float32, or InvalidInput when they are not all numbers."""
    if isinstance(values, str | bytes) or any(isinstance(v, str | bytes) for v in _flat(values)):
        raise InvalidInput(f"{what} must be numbers, not text")
    try:
        # A number beyond float32 becomes infinity, which the callers refuse by name.
        with np.errstate(over="ignore"):
            return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"{what} must be numbers: {exc}") from None


def _flat(values: Any) -> list[Any]:
    return list(values) if isinstance(values, list | tuple) else [values]
