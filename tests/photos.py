"""Corpora of real photos: scikit-image's samples, cropped, flipped and scaled.

Used where a change of numerics must be checked on many photos (decoders, int8): every
variant is a deterministic function of its index, so two runs see the same JPEG bytes.
`jpegs` is made offline from every sample scikit-image ships, textures and micrographs
included. `photograph_jpegs` is made from photographs of scenes only: scikit-image's and
the Debian wallpapers of `tests/wallpapers.py`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data as skimage_data

from tests.wallpapers import CACHE, photographs

# Colour photos scikit-image ships in its wheel (nothing is downloaded).
COLOUR = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "cat",
)
# Greyscale photos, served as RGB.
GREY = ("camera", "coins", "moon", "page", "brick", "grass", "gravel")
LONG_SIDES = (160, 240, 320, 451, 640, 800, 1024, 1280, 1920)
# scikit-image's photographs of scenes, people, animals and things (`cat` is `chelsea`).
SCENES = ("astronaut", "chelsea", "coffee", "rocket", "camera")


@cache
def sources() -> dict[str, Image.Image]:
    """Every source photo, RGB."""
    photos = {name: np.asarray(getattr(skimage_data, name)()) for name in COLOUR + GREY}
    left, right, _ = skimage_data.stereo_motorcycle()
    photos |= {"motorcycle_left": left, "motorcycle_right": right}
    return {name: Image.fromarray(a).convert("RGB") for name, a in photos.items()}


@cache
def scene_sources(cache: Path = CACHE) -> dict[str, Image.Image]:
    """scikit-image's photographs of scenes and the Debian wallpapers (fetched into `cache`).

    Raises `tests.wallpapers.Unavailable` or `FetchFailed` when the wallpapers cannot be had.
    """
    photos = {name: sources()[name] for name in SCENES}
    photos["motorcycle"] = sources()["motorcycle_left"]
    for path in photographs(cache):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        # No variant is larger than this; it halves what the cache holds (2560×1600 each).
        image.thumbnail((max(LONG_SIDES),) * 2, Image.Resampling.LANCZOS)
        photos[path.stem] = image
    return photos


def variant(index: int) -> tuple[str, Image.Image, int]:
    """Photo `index` of the corpus: its name, the image and the JPEG quality to save it at.

    A random crop (30–100% of the area, aspect 0.6–1.7), mirrored half the time, scaled
    to one of LONG_SIDES (up as well as down), with its brightness and contrast moved
    by up to 20%.
    """
    return _variant(sources(), index)


def _variant(photos: dict[str, Image.Image], index: int) -> tuple[str, Image.Image, int]:
    names = sorted(photos)
    source_name = names[index % len(names)]
    image = photos[source_name]
    rng = np.random.default_rng(index)
    w, h = image.size
    area = rng.uniform(0.3, 1.0) * w * h
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))
    cw = int(min(w, max(16, round((area * aspect) ** 0.5))))
    ch = int(min(h, max(16, round((area / aspect) ** 0.5))))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = int(rng.choice(LONG_SIDES))
    scale = side / max(cw, ch)
    size = (max(8, round(cw * scale)), max(8, round(ch * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
    image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.8, 1.2)))
    quality = int(rng.integers(70, 96))
    return f"{index:04d}_{source_name}", image, quality


def jpeg(index: int) -> bytes:
    """Photo `index` as JPEG bytes."""
    _, image, quality = variant(index)
    return _encode(image, quality)


def _encode(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpegs(count: int, start: int = 0) -> Iterator[tuple[str, bytes]]:
    """`count` photos from `start`, as (name, JPEG bytes)."""
    for index in range(start, start + count):
        yield variant(index)[0], jpeg(index)


def photograph_jpegs(count: int, cache: Path = CACHE) -> Iterator[tuple[str, bytes]]:
    """`count` photos of scenes as (name, JPEG bytes), the same on every run.

    First the wallpaper files as Debian ships them (their own encoders' bytes), then
    variants (as `variant` makes them) of every scene photograph.

    Raises `tests.wallpapers.Unavailable` or `FetchFailed` when the wallpapers cannot be had.
    """
    photos = scene_sources(cache)
    originals = photographs(cache)[:count]
    for path in originals:
        yield f"original_{path.stem}", path.read_bytes()
    for index in range(count - len(originals)):
        name, image, quality = _variant(photos, index)
        yield name, _encode(image, quality)


def write_folder(folder: Path, count: int, start: int = 0) -> Path:
    """Write `count` photos as JPEG files into `folder` (made if missing); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in jpegs(count, start):
        (folder / f"{name}.jpg").write_bytes(data)
    return folder
