"""INT8 export: static QDQ quantisation, calibrated on a folder of images, checked against f32.

Every image exporter verifies its f32 `model.onnx` first; `quantize_servable` then replaces
it, inside the hidden export folder, by a statically quantised model (ONNX QDQ, activations
uint8 per tensor, ranges from MinMax calibration; weights int8 per channel). The weights use
all 8 bits where this CPU's int8 kernels add products without saturating (VNNI or AMX, see
`pyserving.cpu`), else 7 bits on dense Conv, Gemm and MatMul (`--int8_weights` overrides);
the source section records which, and the server refuses 8-bit weights on a CPU that would
saturate them. The images of the calibration folder are decoded and resized exactly as the
server does and split deterministically: every 5th one, and those past the calibration
limit, are held back to measure how often the int8 model's top-1 class agrees with the f32
model's, on every engine here (`int8_engines`: their int8 kernels round differently); the
rest calibrate. The reference set stored with the version holds held-back images every
engine agrees with f32 on and the f32 model's scores on them, and the int8 model must pass
the check the server makes with it on each. See docs/int8.md for the figures.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from pyserving.cpu import int8_dot_product, int8_weight_bits
from pyserving.errors import ExportError, InvalidInput
from pyserving.export.int8_engines import BATCH, engine_scores, onnxruntime_scores
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
DEFAULT_TOLERANCE = 0.02
# What the source section records; also what `quantize_static` is given below.
SETTINGS = {
    "format": "QDQ",
    "activations": "uint8, per tensor",
    "calibration_method": "MinMax",
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
    """Top-1 agreement of int8 with f32 on the held-back images, per engine."""

    f32: np.ndarray  # scores on the held-back images
    int8: dict[str, np.ndarray]  # engine name: its int8 scores on them

    def agreed(self, engine: str) -> np.ndarray:
        """bool per held-back image: `engine`'s int8 top-1 class is f32's."""
        return np.asarray(self.f32.argmax(axis=1) == self.int8[engine].argmax(axis=1))

    @property
    def everywhere(self) -> np.ndarray:
        """bool per held-back image: every engine's int8 top-1 class is f32's."""
        return np.asarray(np.logical_and.reduce([self.agreed(engine) for engine in self.int8]))

    @property
    def worst(self) -> str:
        """The engine that agrees least (the one the bar applies to)."""
        return min(self.int8, key=lambda engine: int(self.agreed(engine).sum()))

    @property
    def fraction(self) -> float:
        return float(self.agreed(self.worst).mean())

    def by_engine(self) -> dict[str, float]:
        return {engine: round(float(self.agreed(engine).mean()), 4) for engine in self.int8}

    def describe(self) -> str:
        """The worst engine's figure first, then the others'."""
        count, total = int(self.agreed(self.worst).sum()), len(self.f32)
        others = [
            f"{100 * self.agreed(engine).mean():.1f}% on {engine}"
            for engine in self.int8
            if engine != self.worst
        ]
        return (
            f"int8 top-1 agrees with f32 on {count} of {total} held-back images "
            f"({100 * self.fraction:.1f}%) on {self.worst}"
            + "".join(f"; {other}" for other in others)
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
    agreement = _Agreement(f32, engine_scores(model, signature, calibration.held_back))
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
        "min_agreement": options.min_agreement,
        "calibration_limit": options.limit,
        "held_back_limit": options.held_back,
        "quantize_seconds": round(seconds, 1),  # pre-processing, calibration, weights
        "reference_tolerance": options.tolerance,
    }
    return replace(
        signature, precision=options.precision, source={**signature.source, "quantization": details}
    )


def weight_bits(options: QuantizeOptions) -> int:
    """The weight bits `options` ask for: `auto` is 8 where this CPU has VNNI or AMX, else 7."""
    return int8_weight_bits() if options.weights == "auto" else int(options.weights)


def _why_bits(options: QuantizeOptions) -> str:
    if options.weights != "auto":
        return f"--int8_weights {options.weights}"
    found = int8_dot_product()
    return f"this CPU has {found}" if found else "this CPU has no VNNI or AMX"


def _quantize(model: Path, images: np.ndarray, input_name: str, bits: int) -> None:
    """Overwrite `model` with its QDQ int8 version, calibrated on `images`, `bits`-bit weights."""
    try:
        import onnx
    except ImportError as exc:
        raise missing_extra(exc.name or "onnx", "onnx") from exc
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="pyserving-quantize-") as tmp, _quiet_onnxruntime():
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # Shape inference and constant folding first, as ONNX Runtime recommends.
            quant_pre_process(str(model), str(prepared))
            quantize_static(
                str(prepared),
                str(model),
                _Batches(images, input_name),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options=(
                    {"TensorQuantOverrides": _seven_bit_weights(onnx.load(prepared))}
                    if bits == 7
                    else {}
                ),
            )
        except Exception as exc:
            raise ExportError(f"ONNX Runtime could not quantise the model: {exc}") from exc


class _OnnxRuntimeChatter(logging.Filter):
    """Drops what ONNX Runtime's quantisation tools log below WARNING on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in Path(record.pathname).parts


@contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Keep the export's progress readable: the tools log a line per adjusted weight scale."""
    root, named = logging.getLogger(), logging.getLogger("onnxruntime")
    chatter, level = _OnnxRuntimeChatter(), named.level
    root.addFilter(chatter)
    named.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.removeFilter(chatter)
        named.setLevel(level)


class _Batches:
    """Calibration images in batches, as `quantize_static` reads them (a CalibrationDataReader)."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [images[i : i + BATCH] for i in range(0, len(images), BATCH)]
        )
        self._input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def _seven_bit_weights(model: Any) -> dict[str, list[dict[str, Any]]]:
    """Per-channel overrides giving 7-bit weights to dense Conv, Gemm and MatMul.

    Without VNNI or AMX, x86 int8 kernels (ONNX Runtime's and OpenVINO's) add pairs of u8×s8
    products in 16 bits, which saturates with 8-bit weights: top-1 agreement with f32 on
    EfficientNet-Lite0 fell from about 0.87 (emulated) to 0.52. Depthwise convolutions
    run another kernel that does not saturate, so they keep all 8 bits.
    """
    weights = {w.name: list(w.dims) for w in model.graph.initializer}
    overrides: dict[str, list[dict[str, Any]]] = {}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in weights:
            continue
        dims = weights[node.input[1]]
        axis = _dense_weight_axis(node, dims)
        if axis is not None:
            channels: list[dict[str, Any]] = [{"reduce_range": True} for _ in range(dims[axis])]
            channels[0]["axis"] = axis
            overrides[node.input[1]] = channels
    return overrides


def _dense_weight_axis(node: Any, dims: list[int]) -> int | None:
    """The output-channel axis of `node`'s weight if its int8 kernel can saturate, else None."""
    attributes = {a.name: a.i for a in node.attribute}
    if node.op_type == "Conv":
        depthwise = attributes.get("group", 1) > 1 and len(dims) > 1 and dims[1] == 1
        return None if depthwise else 0
    if node.op_type == "Gemm" and len(dims) == 2:
        return 0 if attributes.get("transB", 0) else 1
    if node.op_type == "MatMul" and len(dims) == 2:
        return 1
    return None


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
