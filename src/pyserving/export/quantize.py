"""INT8 export: static QDQ quantisation, calibrated on a folder of images, checked against f32.

Every image exporter verifies its f32 `model.onnx` first; `quantize_servable` then replaces
it, inside the hidden export folder, by a statically quantised model made by NNCF (ONNX QDQ,
8-bit activations per tensor, ranges from MinMax calibration, then bias correction: each
layer's bias absorbs the mean error its quantisation adds; weights int8 per channel). The
weights use all 8 bits where this CPU's int8 kernels add products without saturating (VNNI
or AMX, see `pyserving.cpu`), else 7 bits on dense Conv, Gemm and MatMul (NNCF's overflow
fix; `--int8_weights` overrides);
the source section records which, and the server refuses 8-bit weights on a CPU that would
saturate them. The images of the calibration folder are decoded and resized exactly as the
server does and split deterministically: every 5th one, and those past the calibration
limit, are held back to measure how often the int8 model's top-1 class agrees with the f32
model's, on every engine here (`int8_engines`: their int8 kernels round differently),
counting the images whose f32 top-1 probability exceeds the second's by at least
`--agreement_margin` (near-ties, which any rounding swaps, even bf16's, are reported apart);
the rest calibrate. The reference set stored with the version holds held-back images every
engine agrees with f32 on and the f32 model's scores on them, and the int8 model must pass
the check the server makes with it on each. See docs/int8.md for the figures.
"""

from __future__ import annotations

import io
import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pyserving.cpu import int8_dot_product, int8_weight_bits
from pyserving.errors import ExportError, InvalidInput
from pyserving.export.int8_engines import engine_scores, onnxruntime_scores
from pyserving.export.write import Progress, missing_extra
from pyserving.postprocess import softmax
from pyserving.preprocess import ACCEPTED_FORMATS, ACCEPTED_TEXT, decode_image
from pyserving.reference import check_reference, load_reference, write_reference
from pyserving.signature import MODEL_FILE, Signature

__all__ = [
    "QUANTIZE_STEPS",
    "Calibration",
    "QuantizeOptions",
    "load_calibration",
    "quantize_servable",
    "split",
    "weight_bits",
]

QUANTIZE_STEPS = 4  # read calibration images, calibrate, agreement, reference set
PRECISIONS = ("int8",)
HOLD_BACK_EVERY = 5  # every 5th image measures agreement instead of calibrating
MIN_IMAGES = 2
REFERENCE_SIZE = 8
DEFAULT_LIMIT = 100
DEFAULT_HELD_BACK = 500
WEIGHT_BITS = ("auto", "8", "7")
DEFAULT_MIN_AGREEMENT = 0.98
DEFAULT_MARGIN = 0.05
DEFAULT_TOLERANCE = 0.02
# What the source section records; also what `nncf.quantize` is given below.
SETTINGS = {
    "quantizer": "NNCF",
    "format": "QDQ",
    "activations": "8-bit, per tensor (uint8 after ReLU, int8 where signed)",
    "calibration_method": "MinMax",
    "bias_correction": True,
}
WEIGHTS = {
    8: "int8, per channel, 8-bit",
    7: "int8, per channel; 7-bit on dense Conv, Gemm and MatMul, 8-bit on depthwise Conv",
}


@dataclass(frozen=True)
class QuantizeOptions:
    """What `--quantize int8` asks for: calibration images and the bars the result must clear."""

    calibration: Path
    limit: int = DEFAULT_LIMIT  # most images that calibrate
    held_back: int = DEFAULT_HELD_BACK  # most images held back to measure agreement
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # held-back top-1 agreement with f32, 0–1
    # Held-back images count toward the bar when f32's top-1 probability exceeds the
    # second's by at least this.
    margin: float = DEFAULT_MARGIN
    tolerance: float = DEFAULT_TOLERANCE  # reference set: largest probability difference
    precision: str = "int8"
    weights: str = "auto"  # weight bits: auto (8 with VNNI or AMX, else 7), 8 or 7

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ExportError(
                f"cannot quantise to {self.precision!r}; accepted: {', '.join(PRECISIONS)}"
            )
        if self.limit < 1:
            raise ExportError(f"--calibration_limit must be at least 1 image, got {self.limit}")
        if self.held_back < 1:
            raise ExportError(f"--held_back must be at least 1 image, got {self.held_back}")
        if self.weights not in WEIGHT_BITS:
            raise ExportError(f"--int8_weights {self.weights!r}: expected {', '.join(WEIGHT_BITS)}")
        if not (math.isfinite(self.min_agreement) and self.min_agreement >= 0):
            raise ExportError(
                f"--min_agreement is a fraction of held-back images (0–1), got {self.min_agreement}"
            )
        if not 0 <= self.margin <= 1:
            raise ExportError(
                f"--agreement_margin is a probability difference from 0 to 1, got {self.margin}"
            )
        if not 0 <= self.tolerance <= 1:
            raise ExportError(
                f"--precision_tolerance is a probability difference from 0 to 1, "
                f"got {self.tolerance}"
            )


@dataclass(frozen=True)
class Calibration:
    """The calibration folder's images as the model takes them, split in two."""

    options: QuantizeOptions
    calibrate: np.ndarray  # uint8 [N, H, W, 3]: the images that set the activation ranges
    held_back: np.ndarray  # uint8 [M, H, W, 3]: the images that measure agreement
    found: int  # readable images in the folder, before the limit
    skipped: int  # files that are not images the server would read


@dataclass(frozen=True)
class _Agreement:
    """Top-1 agreement of int8 with f32 on the held-back images, per engine.

    The bar applies to the images `counted` (f32's top-1 probability ahead of the second's
    by at least the margin); the figure on all of them is reported beside it.
    """

    f32: np.ndarray  # scores on the held-back images
    int8: dict[str, np.ndarray]  # engine name: its int8 scores on them
    counted: np.ndarray  # bool per held-back image: counts toward the bar
    margin: float

    def agreed(self, engine: str) -> np.ndarray:
        """bool per held-back image: `engine`'s int8 top-1 class is f32's."""
        return np.asarray(self.f32.argmax(axis=1) == self.int8[engine].argmax(axis=1))

    def _fraction(self, engine: str) -> float:
        counted = self.agreed(engine)[self.counted]
        return float(counted.mean()) if len(counted) else 0.0

    @property
    def everywhere(self) -> np.ndarray:
        """bool per held-back image: every engine's int8 top-1 class is f32's."""
        return np.asarray(np.logical_and.reduce([self.agreed(engine) for engine in self.int8]))

    @property
    def worst(self) -> str:
        """The engine that agrees least on the counted images (the one the bar applies to)."""
        return min(self.int8, key=lambda engine: int(self.agreed(engine)[self.counted].sum()))

    @property
    def fraction(self) -> float:
        return self._fraction(self.worst)

    def by_engine(self) -> dict[str, float]:
        return {engine: round(self._fraction(engine), 4) for engine in self.int8}

    def all_by_engine(self) -> dict[str, float]:
        """Agreement on every held-back image, near-ties included."""
        return {engine: round(float(self.agreed(engine).mean()), 4) for engine in self.int8}

    def describe(self) -> str:
        """The worst engine's figure first, then the others', then all images'."""
        count = int(self.agreed(self.worst)[self.counted].sum())
        counted, total = int(self.counted.sum()), len(self.f32)
        others = [
            f"{100 * self._fraction(engine):.1f}% on {engine}"
            for engine in self.int8
            if engine != self.worst
        ]
        every = ", ".join(
            f"{100 * fraction:.1f}% on {engine}"
            for engine, fraction in self.all_by_engine().items()
        )
        return (
            f"int8 top-1 agrees with f32 on {count} of {counted} held-back images "
            f"({100 * self.fraction:.1f}%) on {self.worst}"
            + "".join(f"; {other}" for other in others)
            + f" (those of {total} where f32's top-1 probability leads the second's by "
            f"{self.margin:g} or more; on all {total}: {every})"
        )


def load_calibration(
    options: QuantizeOptions, height: int, width: int, resize: str, progress: Progress
) -> Calibration:
    """Read, split and decode the images of `options.calibration` as the server would.

    Raises ExportError for a folder that is missing, holds no readable image or too few.
    """
    folder = options.calibration
    progress.step(f"reading calibration images in {folder}")
    files = _files(folder)
    images = [path for path in files if _is_image(path)]
    skipped = len(files) - len(images)
    if not images:
        raise ExportError(
            f"no readable image in {folder} ({_skipped(skipped)}): --calibration takes a "
            f"folder of images ({ACCEPTED_TEXT})"
        )
    rest, held = split(len(images), options.limit, options.held_back)
    decoded: dict[int, np.ndarray] = {}
    for i in held + rest:
        try:
            decoded[i] = decode_image(images[i].read_bytes(), height, width, resize)
        except (InvalidInput, OSError):
            skipped += 1  # a header Pillow reads, then bytes it cannot decode
    rest, held = [i for i in rest if i in decoded], [i for i in held if i in decoded]
    if not rest or not held:
        raise ExportError(
            f"{folder} has {len(decoded)} readable image{'' if len(decoded) == 1 else 's'} "
            f"({_skipped(skipped)}); an int8 export needs at least {MIN_IMAGES}: most "
            f"calibrate, every {HOLD_BACK_EVERY}th is held back to measure agreement with f32"
        )
    return Calibration(
        options,
        np.stack([decoded[i] for i in rest]),
        np.stack([decoded[i] for i in held]),
        len(images),
        skipped,
    )


def split(
    count: int, limit: int, held_back: int = DEFAULT_HELD_BACK
) -> tuple[list[int], list[int]]:
    """Indices of `count` images (sorted by path) that calibrate, and those held back.

    Every 5th image is held back (the last one if there are fewer than 5); of the others,
    at most `limit` calibrate, evenly spread over the folder, and the rest are held back
    too. At most `held_back` are held back, evenly spread.
    """
    fifth = [i for i in range(count) if i % HOLD_BACK_EVERY == HOLD_BACK_EVERY - 1]
    fifth = fifth or [count - 1]
    rest = _spread(sorted(set(range(count)) - set(fifth)), limit)
    held = sorted(set(range(count)) - set(rest))
    return rest, _spread(held, held_back)


def _skipped(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'} skipped"


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        why = "not a folder" if folder.exists() else "no such folder"
        raise ExportError(
            f"no readable image in {folder} (0 files skipped): {why}; --calibration takes a "
            f"folder of images ({ACCEPTED_TEXT})"
        )
    return sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.as_posix())


def _is_image(path: Path) -> bool:
    """Whether Pillow opens `path` as a format the server accepts; reads the header only."""
    try:
        with Image.open(path, formats=ACCEPTED_FORMATS):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return False


def _spread(items: list[int], most: int) -> list[int]:
    """At most `most` of `items`, evenly spaced, so a capped sample spans the whole folder."""
    if len(items) <= most:
        return items
    picks = np.linspace(0, len(items) - 1, most).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


def quantize_servable(
    folder: Path, signature: Signature, calibration: Calibration, progress: Progress
) -> Signature:
    """Replace the verified f32 `model.onnx` in `folder` by its int8 version.

    Raises ExportError when the held-back agreement is below `min_agreement` or the
    reference set fails. Writes the reference set; returns `signature` as int8, with the
    quantisation recorded in its source.
    """
    options = calibration.options
    model = folder / MODEL_FILE
    f32 = onnxruntime_scores(model, signature, calibration.held_back)
    bits = weight_bits(options)
    started = time.perf_counter()
    progress.step(
        f"calibrating int8 on {len(calibration.calibrate)} images "
        f"({len(calibration.held_back)} held back; {SETTINGS['calibration_method']}; "
        f"{bits}-bit weights: {_why_bits(options)})"
    )
    _quantize(model, calibration.calibrate, signature.input_name, bits)
    seconds = time.perf_counter() - started
    agreement = _Agreement(
        f32,
        engine_scores(model, signature, calibration.held_back),
        _lead(f32, signature.scores == "logits") >= options.margin,
        options.margin,
    )
    progress.step(agreement.describe())
    if agreement.fraction < options.min_agreement:
        raise ExportError(
            f"{agreement.describe()}, below --min_agreement {options.min_agreement:g} "
            f"({100 * options.min_agreement:.1f}%): calibrate with more images like those "
            "the model will serve, lower --min_agreement, or export f32"
        )
    check = _write_reference(folder, signature, calibration, agreement)
    progress.step(f"reference set passes through int8 on {check}")
    details = {
        **SETTINGS,
        "weights": WEIGHTS[bits],
        "weight_bits": bits,
        "int8_weights": options.weights,
        "calibration_folder": str(options.calibration),
        "images_found": calibration.found,
        "calibration_images": len(calibration.calibrate),
        "held_back_images": len(calibration.held_back),
        "agreement": round(agreement.fraction, 4),
        "agreement_by_engine": agreement.by_engine(),
        "agreement_margin": options.margin,
        "counted_images": int(agreement.counted.sum()),
        "agreement_all_images_by_engine": agreement.all_by_engine(),
        "min_agreement": options.min_agreement,
        "calibration_limit": options.limit,
        "held_back_limit": options.held_back,
        "quantize_seconds": round(seconds, 1),  # calibration, bias correction, weights
        "reference_tolerance": options.tolerance,
    }
    return replace(
        signature, precision=options.precision, source={**signature.source, "quantization": details}
    )


def _lead(scores: np.ndarray, logits: bool) -> np.ndarray:
    """Per image, how far the top-1 class's probability is ahead of the second's."""
    probabilities = softmax(scores.astype(np.float64)) if logits else scores
    if probabilities.shape[1] < 2:
        return np.ones(len(probabilities))
    top = np.sort(probabilities, axis=1)
    return np.asarray(top[:, -1] - top[:, -2])


def weight_bits(options: QuantizeOptions) -> int:
    """The weight bits `options` ask for: `auto` is 8 where this CPU has VNNI or AMX, else 7."""
    return int8_weight_bits() if options.weights == "auto" else int(options.weights)


def _why_bits(options: QuantizeOptions) -> str:
    if options.weights != "auto":
        return f"--int8_weights {options.weights}"
    found = int8_dot_product()
    return f"this CPU has {found}" if found else "this CPU has no VNNI or AMX"


def _quantize(model: Path, images: np.ndarray, input_name: str, bits: int) -> None:
    """Overwrite `model` with its QDQ int8 version, calibrated on `images`, `bits`-bit weights.

    NNCF rather than ONNX Runtime's `quantize_static`: with the same MinMax ranges, bias
    correction raised top-1 agreement with f32 on EfficientNet-Lite0 from 0.82–0.85 to
    0.88–0.92 over every held-back photo, and from 0.95–0.96 to 0.99 over those that are no
    near-tie for f32 (docs/int8.md), at the same speed on OpenVINO.
    """
    # As the OpenVINO engine does: no usage event leaves the machine (NNCF sends its own
    # through openvino_telemetry when that imports).
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    try:
        import nncf
        import onnx
    except ImportError as exc:
        raise missing_extra(exc.name or "nncf", "int8") from exc
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    # One image per item: NNCF's statistics and bias correction expect batch 1.
    dataset = nncf.Dataset(
        [images[i : i + 1] for i in range(len(images))], lambda batch: {input_name: batch}
    )
    # 7 bits: NNCF's overflow fix halves the range of dense Conv, Gemm and MatMul weights
    # (depthwise ones keep 8 bits), the scheme `pyserving.cpu` explains.
    overflow = OverflowFix.DISABLE if bits == 8 else OverflowFix.ENABLE
    with _quiet_nncf():
        try:
            quantized = nncf.quantize(
                onnx.load(str(model)),
                dataset,
                preset=nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(images),
                fast_bias_correction=False,
                advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow),
            )
        except Exception as exc:
            raise ExportError(f"NNCF could not quantise the model: {exc}") from exc
    onnx.save(quantized, str(model))


@contextmanager
def _quiet_nncf() -> Iterator[None]:
    """Keep the export's progress readable, and stdout for the version's path alone.

    NNCF draws progress bars on stdout and logs a line per step there; the export's own
    step line says what is happening. Its warnings and errors still show, on stderr.
    """
    named = logging.getLogger("nncf")
    theirs, level = list(named.handlers), named.level
    ours = logging.StreamHandler(sys.stderr)  # the stderr of now, which tests capture
    for handler in theirs:
        named.removeHandler(handler)
    named.addHandler(ours)
    named.setLevel(max(level, logging.WARNING))
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        named.removeHandler(ours)
        for handler in theirs:
            named.addHandler(handler)
        named.setLevel(level)


def _write_reference(
    folder: Path, signature: Signature, calibration: Calibration, agreement: _Agreement
) -> str:
    """Store held-back images every engine agrees with f32 on, with f32 scores; check them.

    Of those, the ones whose probabilities differ least on every engine come first, up to
    REFERENCE_SIZE within the tolerance: the set tells the server whether its engine
    computes what was measured here, while the held-back agreement above is the measure of
    quality.
    """
    tolerance = calibration.options.tolerance
    logits = signature.scores == "logits"
    everywhere = agreement.everywhere
    if not everywhere.any():
        raise ExportError(f"{agreement.describe()}: no held-back image for the reference set")
    difference = np.max(
        [_probability_difference(agreement.f32, int8, logits) for int8 in agreement.int8.values()],
        axis=0,
    )
    agreed = [i for i in np.argsort(difference, kind="stable") if everywhere[i]]
    chosen = [i for i in agreed if difference[i] <= tolerance][:REFERENCE_SIZE] or agreed[:1]
    write_reference(folder, calibration.held_back[chosen], agreement.f32[chosen])
    reference = load_reference(folder)
    assert reference is not None  # written just above
    checks = {
        engine: check_reference(reference, int8, logits, tolerance)
        for engine, int8 in engine_scores(folder / MODEL_FILE, signature, reference.inputs).items()
    }
    failed = {engine: check for engine, check in checks.items() if not check.passed}
    if failed:
        engine, check = next(iter(failed.items()))
        raise ExportError(
            f"{agreement.describe()}, but the reference set fails the check the server "
            f"makes on {engine}: {check.describe()} (probabilities on the {len(agreed)} "
            f"images every engine agrees on differ by {difference[agreed].min():.4f} to "
            f"{difference[agreed].max():.4f}); allow more with --precision_tolerance, here "
            "and when serving, or calibrate with images like those the model will serve"
        )
    return "; ".join(f"{engine}: {check.describe()}" for engine, check in checks.items())


def _probability_difference(f32: np.ndarray, int8: np.ndarray, logits: bool) -> np.ndarray:
    """Per image, the largest difference of any class's probability."""
    a, b = f32.astype(np.float64), int8.astype(np.float64)
    if logits:
        a, b = softmax(a), softmax(b)
    return np.asarray(np.abs(a - b).max(axis=1))
