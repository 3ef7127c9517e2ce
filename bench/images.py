"""The benchmark's photos: scikit-image's Chelsea the cat, resized with Pillow, as JPEG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage import data as skimage_data

SIZES = {"640×480": (640, 480), "1920×1080": (1920, 1080), "4000×3000": (4000, 3000)}


def chelsea_jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """Chelsea resized (bicubic) to `width`×`height` and encoded as a JPEG."""
    photo = Image.fromarray(np.asarray(skimage_data.chelsea()))  # type: ignore[no-untyped-call]
    buffer = io.BytesIO()
    photo.resize((width, height), Image.Resampling.BICUBIC).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


def benchmark_images() -> dict[str, bytes]:
    """The photos the image rows use, by their size label."""
    return {label: chelsea_jpeg(w, h) for label, (w, h) in SIZES.items()}
