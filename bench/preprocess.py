"""CPU per image of the ways from JPEG bytes to the model's 224×224 input, one thread.

`python -m bench.preprocess` prints, for each photo size, the median CPU time
(`time.thread_time`, many repetitions, so the other processes on a shared machine do
not count) of the pipeline served before (`decode_image_pillow`: Pillow, draft mode,
bilinear), of the one served now (`decode_image`: the JPEG fast path) and of the other
candidates that are installed, and how far each one's pixels are from Pillow's. With
`--agreement FOLDER` (a version folder of an image model) it also runs the model on
photos from `tests/photos.py` decoded each way and prints how often the top-1 class is
the one Pillow's pixels give, on photographs of scenes (Debian's wallpapers, fetched
with apt on first use, and scikit-image's photographs) and on every scikit-image sample.
Candidates not installed are listed as such.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.images import chelsea_jpeg
from pyserving.preprocess import decode_image, decode_image_pillow

SIZES = ((451, 300), (640, 480), (1920, 1080), (4000, 3000))
TARGET = (224, 224)
Decode = Callable[[bytes, int, int], np.ndarray]


@dataclass(frozen=True)
class Candidate:
    """A way from JPEG bytes to pixels, and the package it needs (None: always there)."""

    name: str
    needs: str | None
    build: Callable[[], Decode]


def _draft_scale(data: bytes, width: int, height: int) -> tuple[int, int, int]:
    w, h = Image.open(io.BytesIO(data)).size
    scale = min(w // width, h // height)
    return next((s for s in (8, 4, 2) if scale >= s), 1), w, h


def _simplejpeg() -> Decode:
    """libjpeg-turbo at Pillow's draft scale, to RGB: the same pixels as Pillow decodes."""
    import simplejpeg

    def decode(data: bytes, height: int, width: int) -> np.ndarray:
        scale, w, h = _draft_scale(data, width, height)
        return np.asarray(
            simplejpeg.decode_jpeg(
                data, "RGB", min_height=-(-h // scale), min_width=-(-w // scale), min_factor=scale
            )
        )

    return decode


def _simplejpeg_pillow() -> Decode:
    jpeg = _simplejpeg()

    def decode(data: bytes, height: int, width: int) -> np.ndarray:
        image = Image.fromarray(jpeg(data, height, width))
        return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))

    return decode


def _opencv(interpolation: str) -> Callable[[], Decode]:
    def build() -> Decode:
        import cv2

        cv2.setNumThreads(1)  # one thread per image, as the server's pool decodes
        reduced = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4}
        reduced[8] = cv2.IMREAD_REDUCED_GRAYSCALE_8
        flag = getattr(cv2, interpolation)

        def decode(data: bytes, height: int, width: int) -> np.ndarray:
            scale, _, _ = _draft_scale(data, width, height)
            pixels = cv2.imdecode(
                np.frombuffer(data, np.uint8), reduced[scale] | cv2.IMREAD_COLOR_RGB
            )
            if pixels is None:
                raise ValueError("OpenCV could not decode the image")
            return np.asarray(cv2.resize(pixels, (width, height), interpolation=flag))

        return decode

    return build


OLD = Candidate("Pillow alone (before)", None, lambda: decode_image_pillow)
SERVED = Candidate("served (decode_image)", None, lambda: decode_image)
CANDIDATES = (
    OLD,
    SERVED,
    Candidate("simplejpeg + Pillow resize", "simplejpeg", _simplejpeg_pillow),
    Candidate("OpenCV reduced + INTER_AREA", "cv2", _opencv("INTER_AREA")),
    Candidate("OpenCV reduced + INTER_LINEAR", "cv2", _opencv("INTER_LINEAR")),
)


def installed(candidate: Candidate) -> Decode | None:
    """The candidate's decode function, or None when its package is missing."""
    try:
        return candidate.build()
    except ImportError:
        return None


def cpu_ms(decode: Decode, data: bytes, repeats: int) -> float:
    """Median CPU milliseconds of this thread for one decode."""
    decode(data, *TARGET)  # warm caches and lazy imports
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        decode(data, *TARGET)
        times.append(time.thread_time() - start)
    return statistics.median(times) * 1e3


def cpu_line() -> str:
    """The CPU's model name and whether it has bf16, VNNI and AMX, from /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return "CPU: unknown (no /proc/cpuinfo)"
    text = cpuinfo.read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line),
        "unknown",
    )
    flags = set(next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split())
    have = {"bf16": "avx512_bf16", "vnni": "avx512_vnni", "amx": "amx_tile"}
    return f"CPU: {model}; " + ", ".join(
        f"{k} {'yes' if v in flags else 'no'}" for k, v in have.items()
    )


def table(repeats: int) -> list[str]:
    """The Markdown table: one row per size, a CPU-ms column per candidate."""
    decoders = {c.name: installed(c) for c in CANDIDATES}
    header = "| size | " + " | ".join(f"{name} ms" for name in decoders) + " |"
    lines = [header, "|" + "---|" * (len(decoders) + 1)]
    for width, height in SIZES:
        data = chelsea_jpeg(width, height)
        reference = decode_image_pillow(data, *TARGET)
        cells = []
        for decode in decoders.values():
            if decode is None:
                cells.append("not installed")
                continue
            off = np.abs(decode(data, *TARGET).astype(np.int16) - reference).max()
            cells.append(f"{cpu_ms(decode, data, repeats):.2f} (±{off})")
        lines.append(f"| {width}×{height} | " + " | ".join(cells) + " |")
    return lines


def _one_level_noise() -> Decode:
    """Pillow's pixels, each moved by -1, 0 or +1 at random: a yardstick."""
    rng = np.random.default_rng(0)

    def decode(data: bytes, height: int, width: int) -> np.ndarray:
        pixels = decode_image_pillow(data, height, width).astype(np.int16)
        pixels += rng.integers(-1, 2, pixels.shape, dtype=np.int16)
        return np.clip(pixels, 0, 255).astype(np.uint8)

    return decode


NOISE = Candidate("Pillow alone, ±1 level of random noise (yardstick)", None, _one_level_noise)


def agreement(version: Path, count: int) -> list[str]:
    """Top-1 agreement with Pillow alone on `count` photos of each corpus, per candidate.

    The corpora are `tests/photos.py`'s: photographs of scenes (Debian's wallpapers, which
    are fetched with apt on first use, and scikit-image's photographs), and crops of every
    scikit-image sample, textures included.
    """
    import onnxruntime

    from pyserving.kinds import load_signature
    from pyserving.signature import MODEL_FILE
    from tests.photos import jpegs, photograph_jpegs
    from tests.wallpapers import FetchFailed, Unavailable

    signature = load_signature(version)
    session = onnxruntime.InferenceSession(str(version / MODEL_FILE))

    def scores(pixels: np.ndarray) -> Any:
        logits = session.run(None, {signature.input_name: pixels[np.newaxis]})[0][0]
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    corpora: dict[str, Callable[[], Iterable[tuple[str, bytes]]]] = {
        "photographs of scenes (tests/photos.photograph_jpegs)": lambda: photograph_jpegs(count),
        "every scikit-image sample, textures included (tests/photos.jpegs)": lambda: jpegs(count),
    }
    lines = []
    for corpus, photos in corpora.items():
        try:
            data = [jpeg for _, jpeg in photos()]
        except (Unavailable, FetchFailed) as exc:
            lines.append(f"{corpus}: not available here ({exc})")
            continue
        lines.append(f"{corpus}:")
        lines.extend(_agreement_lines(scores, data))
    return lines


def _agreement_lines(scores: Callable[[np.ndarray], Any], photos: list[bytes]) -> list[str]:
    before = [scores(decode_image_pillow(data, *TARGET)) for data in photos]
    lines = []
    for candidate in (*CANDIDATES[1:], NOISE):
        decode = installed(candidate)
        if decode is None:
            lines.append(f"- {candidate.name}: not installed")
            continue
        other = [scores(decode(data, *TARGET)) for data in photos]
        pairs = list(zip(before, other, strict=True))
        same = sum(a.argmax() == b.argmax() for a, b in pairs)
        largest = max(float(np.abs(a - b).max()) for a, b in pairs)
        # How close the top two were where the top-1 changed: near-ties flip first.
        margins = [float(np.diff(np.sort(a)[-2:])[0]) for a, b in pairs if a.argmax() != b.argmax()]
        lines.append(
            f"- {candidate.name}: top-1 same on {same}/{len(photos)} "
            f"({same / len(photos):.1%}), largest probability difference {largest:.4f}"
            + (f", top-2 margin where it changed ≤ {max(margins):.3f}" if margins else "")
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (and the agreement, when asked)."""
    parser = argparse.ArgumentParser(prog="python -m bench.preprocess", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    parser.add_argument("--repeats", type=int, default=200, help="decodes per cell")
    parser.add_argument("--agreement", type=Path, help="an image model's version folder")
    parser.add_argument("--photos", type=int, default=300, help="photos for --agreement")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    print(cpu_line())
    print(f"median CPU ms per image, one thread, {repeats} repetitions; (±N): largest pixel")
    print("difference from Pillow alone, the pipeline served before the JPEG fast path\n")
    print("\n".join(table(repeats)))
    if args.agreement is not None:
        print(f"\ntop-1 agreement with Pillow alone on {args.photos} photos of each corpus:")
        print("\n".join(agreement(args.agreement, args.photos)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
