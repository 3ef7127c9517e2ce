"""The in-process baseline: decode, resize and an engine in one process, no server.

The same work the server does for one request (`pyserving.preprocess.decode_image`, one
`engine.run` with the server's engine options, the top-K), run by a pool of threads.
The best of several pool sizes is the limit the server is compared against.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bench.stats import Measurement, own_cpu_seconds
from pyserving.core.servable import engine_options
from pyserving.core.settings import Settings
from pyserving.engines import load_engine
from pyserving.kinds import load_signature
from pyserving.kinds.base import fields_of
from pyserving.kinds.image import ImageFields
from pyserving.postprocess import top_k
from pyserving.preprocess import decode_image
from pyserving.signature import MODEL_FILE, Signature

Decoder = Callable[[bytes, int, int, str], np.ndarray]
_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def decode_full_size(data: bytes, height: int, width: int, resize: str = "bilinear") -> np.ndarray:
    """`decode_image` without JPEG draft mode: every pixel decoded, then resized."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = Image.open(io.BytesIO(data))
        opened.load()
        rgb = ImageOps.exif_transpose(opened).convert("RGB")
        return np.asarray(rgb.resize((width, height), _FILTERS[resize]), dtype=np.uint8)


class Pipeline:
    """One servable's work for one image, exactly as the server does it, minus the server.

    `engine` and `precision` are what runs the model (`pyserving.engines`), with the
    server's engine options for `settings`. Raises ServableError where this machine cannot.
    """

    def __init__(
        self,
        version_folder: Path,
        settings: Settings,
        engine: str = "onnxruntime",
        precision: str = "f32",
    ) -> None:
        self.signature: Signature = load_signature(version_folder)
        self.image = fields_of(self.signature, ImageFields)  # ServableError for another kind
        self.engine = load_engine(
            engine,
            version_folder / MODEL_FILE,
            replace(engine_options(settings), precision=precision),
            self.signature.input_name,
            self.signature.output_name,
        )

    def __call__(self, jpeg: bytes, decode: Decoder = decode_image) -> None:
        sig, image = self.signature, self.image
        array = decode(jpeg, image.height, image.width, image.resize)
        scores = self.engine.run(array[np.newaxis])
        top_k(np.asarray(scores)[0], sig.labels, sig.top_k, sig.scores == "logits")

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()

    def baseline(
        self,
        jpeg: bytes,
        pool_sizes: Iterable[int],
        requests: int,
        seconds: float,
        full_size: bool = False,
    ) -> dict[int, Measurement]:
        """Measure `jpeg` at each pool size (draft-mode decode unless `full_size`)."""
        decode = decode_full_size if full_size else decode_image
        return {
            n: measure(lambda: self(jpeg, decode), n, requests, seconds, warmup=2 * n)
            for n in pool_sizes
        }


def measure(
    work: Callable[[], None], workers: int, requests: int, seconds: float, warmup: int
) -> Measurement:
    """Run `work` `requests` times (or until `seconds` pass) on `workers` threads."""
    for _ in range(warmup):
        work()
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= requests or time.perf_counter() >= deadline:
                    return
                issued += 1
            started = time.perf_counter()
            try:
                work()
            except Exception as exc:  # counted, never fatal: the table reports errors
                with lock:
                    errors[type(exc).__name__] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    started, cpu = time.perf_counter(), own_cpu_seconds()
    with ThreadPoolExecutor(workers, thread_name_prefix="bench") as pool:
        for future in [pool.submit(worker) for _ in range(workers)]:
            future.result()
    wall = time.perf_counter() - started
    return Measurement(
        len(latencies),
        sum(errors.values()),
        wall,
        tuple(latencies),
        errors,
        cpu_seconds=own_cpu_seconds() - cpu,
    )
