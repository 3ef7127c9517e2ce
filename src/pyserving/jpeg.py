"""The JPEG fast path: libjpeg-turbo through simplejpeg, resized by fast_image_resize.

`preprocess.decode_image` tries this first for a JPEG that Pillow has opened lazily (so
its size is already checked). It decodes at the DCT scale Pillow's draft mode picks
(the same pixels as Pillow's: identical on every photo of `tests/photos.py`), resizes
with the same convolution filter as Pillow's (`cykooz-resizer`, SIMD), one axis at a time
in the order Pillow takes, rounding between the passes as Pillow does, then applies the
EXIF orientation to the small result. Its 16-bit coefficients round differently from
Pillow's 22-bit ones, so one value in 600 to 1,000 differs by one level.
Bilinear only, the default and EfficientNet's: see FILTERS.
Anything it does not handle as Pillow does returns None, and the caller uses Pillow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# Pillow's JPEG modes whose pixels libjpeg converts to RGB itself, as in Pillow. CMYK and
# YCCK (Adobe's inverted ink) stay with Pillow.
MODES = ("RGB", "L")
# The signature's filters this path resizes with, as fast_image_resize names them. Its
# bicubic (Catmull-Rom) and Lanczos clip their overshoot elsewhere than Pillow, up to 14
# levels apart when enlarging; nearest picks other pixels. Those stay with Pillow.
FILTERS = {"bilinear": "bilinear"}
_EXIF_ORIENTATION = 0x0112
# `ImageOps.exif_transpose`'s Pillow transposes, on an (H, W, C) array.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.transpose(1, 0, 2),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270 (counter-clockwise): 90° clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90 (counter-clockwise)
}
_SWAPS_SIDES = (5, 6, 7, 8)


class _Packages:
    """simplejpeg and cykooz_resizer, imported once; a resizer per thread (it has buffers)."""

    def __init__(self, simplejpeg: Any, resizer: Any) -> None:
        self.simplejpeg = simplejpeg
        self.resizer = resizer
        self.options = {
            name: resizer.ResizeOptions(
                resize_alg=resizer.ResizeAlg.convolution(getattr(resizer.FilterType, filt))
            )
            for name, filt in FILTERS.items()
        }
        self._local = threading.local()

    def resize(
        self, pixels: np.ndarray, width: int, height: int, resize: str, turned: bool
    ) -> np.ndarray:
        """RGB `pixels` resized to `width`×`height` with the signature's filter, as Pillow.

        fast_image_resize runs its vertical pass first; Pillow rounds to 8 bits between
        its passes in the order `vertical_first` says, so the passes are run one at a time.
        One call doing both in the other order differs from Pillow on about 12% of values.
        `turned`: Pillow resizes these pixels after turning them by 90° (EXIF orientations
        5 to 8), so its vertical pass is their horizontal one.
        """
        h, w = pixels.shape[:2]
        if w != width and h != height:
            if turned:
                horizontal_first = vertical_first((h, w), (height, width))
            else:
                horizontal_first = not vertical_first((w, h), (width, height))
            if horizontal_first:
                pixels = self._one_pass(pixels, width, h, resize)
            else:
                pixels = self._one_pass(pixels, w, height, resize)
        return self._one_pass(pixels, width, height, resize)

    def _one_pass(self, pixels: np.ndarray, width: int, height: int, resize: str) -> np.ndarray:
        r = self.resizer
        resizer = getattr(self._local, "resizer", None)
        if resizer is None:
            resizer = self._local.resizer = r.Resizer()
        h, w = pixels.shape[:2]
        source = r.ImageData(w, h, r.PixelType.U8x3, pixels.tobytes())
        target = r.ImageData(width, height, r.PixelType.U8x3)
        resizer.resize(source, target, self.options[resize])
        return np.frombuffer(target.get_buffer(), np.uint8).reshape(height, width, 3)


@cache
def _packages() -> _Packages | None:
    """The fast path's packages, or None when one is missing (said once in the log)."""
    try:
        import cykooz_resizer
        import simplejpeg
    except ImportError as exc:
        log.warning("images: %s is not installed; JPEGs are decoded with Pillow", exc.name)
        return None
    return _Packages(simplejpeg, cykooz_resizer)


def describe() -> str:
    """One line for the server's log: which decoder reads which images."""
    packages = _packages()
    if packages is None:
        return "images: decoded and resized with Pillow (the JPEG fast path is not installed)"
    return (
        f"images: JPEG decoded with simplejpeg {packages.simplejpeg.__version__} "
        "(libjpeg-turbo, scaled decoding) and resized with fast_image_resize "
        "(cykooz-resizer); other formats and filters with Pillow"
    )


def vertical_first(size: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether Pillow's `resize` from `size` to `target` (w, h) runs its vertical pass first.

    Pillow 13 resamples rows first unless the height shrinks by more than twice what the
    width does (found by comparing its `resize` with its two one-axis resizes on random
    pixels; `tests/test_jpeg.py` checks it on many sizes); Pillow 11 always resamples
    rows first. Which of the two the installed Pillow does is asked of it once.
    """
    (w, h), (width, height) = size, target
    return h > height and h - height > 2 * (w - width) and _pillow_may_go_vertical_first()


@cache
def _pillow_may_go_vertical_first() -> bool:
    """Whether the installed Pillow takes the vertical pass first where Pillow 13 does."""
    # 4×12 random pixels to 6×4: each order gives other values (checked on 11 and 13).
    probe = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 4, 3), np.uint8))
    bilinear = Image.Resampling.BILINEAR
    direct = probe.resize((6, 4), bilinear)
    return direct.tobytes() == probe.resize((4, 4), bilinear).resize((6, 4), bilinear).tobytes()


def draft_scale(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The DCT scale Pillow's `draft` picks: 8, 4, 2 or 1, never below `target` (w, h)."""
    scale = min(size[0] // target[0], size[1] // target[1])
    return next((s for s in (8, 4, 2) if scale >= s), 1)


def decode(
    data: bytes, opened: Image.Image, size: tuple[int, int], resize: str
) -> np.ndarray | None:
    """`data` as a C-contiguous (h, w, 3) uint8 RGB array of `size` (w, h), or None.

    `opened` is Pillow's lazily opened image of the same bytes, not yet drafted. None
    means "use Pillow": not a plain 8-bit JPEG, a filter or package this path lacks, or
    anything libjpeg-turbo only recovers from (a truncated file, corrupt data).
    """
    packages = _packages()
    if (
        packages is None
        or resize not in FILTERS
        or opened.format != "JPEG"
        or opened.mode not in MODES
    ):
        return None
    try:
        orientation = opened.getexif().get(_EXIF_ORIENTATION, 1)
        # Pillow drafts against the target as given, whatever the orientation.
        scale = draft_scale(opened.size, size)
        w, h = -(-opened.size[0] // scale), -(-opened.size[1] // scale)
        # strict: what libjpeg only recovers from raises, and Pillow decides.
        pixels = packages.simplejpeg.decode_jpeg(
            data, "RGB", min_height=h, min_width=w, min_factor=scale, strict=True
        )
    except Exception:  # whatever it is, Pillow gives the answer it always gave
        return None
    if pixels.shape != (h, w, 3):
        return None  # another scale than Pillow's draft: other pixels
    width, height = size
    if orientation in _SWAPS_SIDES:
        width, height = height, width  # resize as stored, turn the small result
    if (w, h) != (width, height):
        pixels = packages.resize(pixels, width, height, resize, orientation in _SWAPS_SIDES)
    turn = _ORIENT.get(orientation)
    return np.ascontiguousarray(turn(pixels) if turn else pixels)
