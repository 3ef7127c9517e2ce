"""The benchmark's photos: scikit-image's Chelsea the cat as JPEG, at its own size (451×300)
and resized with Pillow.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage import data as skimage_data

# 451×300 is Chelsea's own size: encoded as it is, not resized.
SIZES = {
    "451×300": (451, 300),
    "640×480": (640, 480),
    "1920×1080": (1920, 1080),
    "4000×3000": (4000, 3000),
}


def chelsea_jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """Chelsea resized (bicubic) to `width`×`height`, unless that is her size, as a JPEG."""
    photo = Image.fromarray(np.asarray(skimage_data.chelsea()))  # type: ignore[no-untyped-call]
    if photo.size != (width, height):
        photo = photo.resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def benchmark_images() -> dict[str, bytes]:
    """The photos the image rows use, by their size label."""
    return {label: chelsea_jpeg(w, h) for label, (w, h) in SIZES.items()}
