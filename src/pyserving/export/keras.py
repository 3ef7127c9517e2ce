"""Keras / TensorFlow → ONNX with tf2onnx: a `.keras` file, a SavedModel folder or a model.

The exported graph takes uint8 NHWC pixels and does the model's normalisation itself. The
TensorFlow function that wraps the model is also the reference the ONNX result is checked
against, so the check covers the normalisation too.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pyserving.errors import ExportError
from pyserving.export.image import (
    INPUT_NAME,
    ImageChoices,
    image_size,
    pixel_normalisation,
    write_image_signature,
)
from pyserving.export.labels import Labels, read_labels
from pyserving.export.quantize import QUANTIZE_STEPS, QuantizeOptions, load_calibration
from pyserving.export.verify import compare, load_session, sample_images
from pyserving.export.write import Progress, missing_extra, provenance, write_servable
from pyserving.signature import MODEL_FILE

# TensorFlow's C++ start-up chatter drowns the export's progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    import keras
    import tensorflow as tf
    import tf2onnx
except ImportError as exc:
    raise missing_extra(exc.name or "tensorflow", "tensorflow") from exc

__all__ = ["export_keras", "load_keras"]

OUTPUT_NAME = "scores"
OPSET = 17
STEPS = 5  # load, convert, verify, agree, wrote
SAVED_MODEL_FILE = "saved_model.pb"


@dataclass(frozen=True)
class _Source:
    """A loaded TensorFlow model, seen as one function of one image tensor."""

    call: Callable[[Any], Any]
    shape: tuple[int | None, ...]
    dtype: Any  # tf.DType
    description: str
    owner: Any = None  # what holds the variables `call` uses: a loaded SavedModel


def load_keras(path: Path | str, weights: Path | str | None = None) -> keras.Model:
    """Load a `.keras` (or legacy `.h5`) model file, then `weights` into it if given."""
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ExportError(f"cannot load Keras model {path}: {exc}") from exc
    if weights is not None:
        _load_weights(model, weights)
    return model


def _load_weights(model: keras.Model, weights: Path | str) -> None:
    if not Path(weights).is_file():
        raise ExportError(f"weights file {weights}: no such file")
    try:
        model.load_weights(str(weights))
    except Exception as exc:
        raise ExportError(f"cannot load weights {weights} into the model: {exc}") from exc


def export_keras(
    model: keras.Model | Path | str,
    repository: Path | str,
    name: str,
    *,
    labels: Labels,
    input_size: int | Sequence[int] | None = None,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1 / 255,
    weights: Path | str | None = None,
    signature: str = "serving_default",
    output: str | None = None,
    scores: Literal["logits", "probabilities"] | None = None,
    background: bool = False,
    resize: str = "bilinear",
    top_k: int = 5,
    tolerance: float = 1e-3,
    source: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    quantize: QuantizeOptions | None = None,
) -> Path:
    """Export a Keras model (object, `.keras` file) or a SavedModel folder as a servable.

    The graph computes `(x / 255 - mean) / std` on the pixels (0–1 scale; by default the
    pixels as floats 0–255, for models that scale inside). Inception v3 from
    `keras.applications` takes mean 0.5 and std 0.5, which scales to [-1, 1]. With
    `quantize`, the verified model is replaced by its int8 version (see
    `pyserving.export.quantize`).
    """
    progress = progress or Progress(STEPS + (QUANTIZE_STEPS if quantize else 0))
    choices = ImageChoices(read_labels(labels), background, scores, resize, top_k)
    mean_px, std_px = pixel_normalisation(mean, std)
    loaded = _load(model, weights, signature, output, progress)
    height, width = image_size(input_size, _spatial(loaded.shape))
    calibration = load_calibration(quantize, height, width, resize, progress) if quantize else None
    image_spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name=INPUT_NAME)
    channels_first = _channels_first(loaded.shape)

    def wrapped(image: Any) -> dict[str, Any]:
        # Constants made here, not captured from outside: tf2onnx would make those inputs.
        x = (tf.cast(image, tf.float32) - tf.constant(mean_px)) / tf.constant(std_px)
        if channels_first:
            x = tf.transpose(x, [0, 3, 1, 2])
        return {OUTPUT_NAME: tf.cast(loaded.call(tf.cast(x, loaded.dtype)), tf.float32)}

    serve = tf.function(wrapped, input_signature=[image_spec])

    def reference(images: np.ndarray) -> np.ndarray:
        return np.asarray(serve(tf.constant(images))[OUTPUT_NAME])

    def write(folder: Path) -> None:
        progress.step(f"converting to ONNX with tf2onnx {tf2onnx.__version__} (takes a while)")
        _convert(serve, [image_spec], folder / MODEL_FILE)
        agreement = compare(
            folder / MODEL_FILE,
            INPUT_NAME,
            OUTPUT_NAME,
            sample_images(height, width),
            reference,
            "TensorFlow",
            progress,
            tolerance,
        )
        details = {
            "model": loaded.description,
            **({"weights": str(weights)} if weights is not None else {}),
            **(source or {}),
            "mean": mean_px,
            "std": std_px,
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "tf2onnx_version": tf2onnx.__version__,
            "max_abs_difference": agreement.max_abs_difference,
        }
        origin = provenance("tensorflow", **details)
        write_image_signature(
            folder, (height, width), OUTPUT_NAME, agreement, origin, choices, calibration, progress
        )

    path = write_servable(Path(repository), name, write)
    progress.step(f"wrote {path}")
    return path


def _load(
    model: keras.Model | Path | str,
    weights: Path | str | None,
    signature: str,
    output: str | None,
    progress: Progress,
) -> _Source:
    if isinstance(model, keras.Model):
        progress.step(
            f"using Keras model {model.name!r}" + (f", weights {weights}" if weights else "")
        )
        if weights is not None:
            _load_weights(model, weights)
        return _keras_source(model, model.name)
    path = Path(model)
    if path.is_dir():
        if not (path / SAVED_MODEL_FILE).is_file():
            raise ExportError(f"{path} is a folder without {SAVED_MODEL_FILE}: not a SavedModel")
        if weights is not None:
            raise ExportError("--weights applies to .keras model files, not to a SavedModel")
        progress.step(f"loading SavedModel {path} (signature {signature!r})")
        return _saved_model_source(path, signature, output)
    if not path.is_file():
        raise ExportError(
            f"{path}: no such file or folder (expected a .keras file or a SavedModel)"
        )
    progress.step(f"loading Keras model {path}" + (f", weights {weights}" if weights else ""))
    return _keras_source(load_keras(path, weights), path.name)


def _keras_source(model: keras.Model, description: str) -> _Source:
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) != 1:
        raise ExportError(
            f"Keras model {description!r} has {len(inputs)} inputs; pyserving serves models "
            "with one image input (build it with keras.Input((height, width, 3)))"
        )
    if len(outputs) != 1:
        raise ExportError(
            f"Keras model {description!r} has {len(outputs)} outputs; expected one, the scores"
        )
    shape = tuple(inputs[0].shape)
    _check_image_shape(shape, description)
    return _Source(
        lambda x: model(x, training=False), shape, tf.as_dtype(inputs[0].dtype), description
    )


def _saved_model_source(path: Path, signature: str, output: str | None) -> _Source:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ExportError(f"cannot load SavedModel {path}: {exc}") from exc
    signatures = dict(loaded.signatures)
    if signature not in signatures:
        raise ExportError(
            f"SavedModel {path} has no signature {signature!r}; it has {sorted(signatures)}"
        )
    fn = signatures[signature]
    specs = fn.structured_input_signature[1]
    outputs = sorted(fn.structured_outputs)
    if len(specs) != 1:
        raise ExportError(f"signature {signature!r} takes {len(specs)} inputs; expected one image")
    if output is None and len(outputs) != 1:
        raise ExportError(
            f"signature {signature!r} has outputs {outputs}; choose the scores with --output"
        )
    key = output or outputs[0]
    if key not in outputs:
        raise ExportError(f"signature {signature!r} has no output {key!r}; it has {outputs}")
    ((arg, spec),) = specs.items()
    if not (spec.dtype.is_floating or spec.dtype.is_integer):
        _refuse_non_image_input(fn, arg, spec, path)

    def call(x: Any) -> Any:
        return fn(**{arg: x})[key]

    shape = tuple(spec.shape.as_list()) if spec.shape.rank is not None else ()
    _check_image_shape(shape, str(path))
    description = f"SavedModel {path.name}, signature {signature}"
    return _Source(call, shape, spec.dtype, description, owner=loaded)


def _refuse_non_image_input(fn: Any, arg: str, spec: Any, path: Path) -> None:
    """A signature taking e.g. encoded JPEG strings: convert it as is to name the ops ONNX
    lacks (DecodeJpeg…), else say it does not take pixels."""
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / MODEL_FILE
        as_is = tf.TensorSpec(spec.shape, spec.dtype, name=arg)
        _convert(tf.function(lambda x: fn(**{arg: x})), [as_is], onnx_path)
        load_session(onnx_path)  # raises naming the unsupported operations, if any
    raise ExportError(
        f"SavedModel {path} takes {spec.dtype.name} input {arg!r}; pyserving needs a model "
        "that takes pixels [N, height, width, 3] (it decodes and resizes images itself)"
    )


def _check_image_shape(shape: tuple[Any, ...], description: str) -> None:
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ExportError(
            f"{description} takes input of shape {shape}; expected images [N, H, W, 3] "
            "(or [N, 3, H, W])"
        )


def _channels_first(shape: tuple[Any, ...]) -> bool:
    return bool(shape[3] != 3 and shape[1] == 3)


def _spatial(shape: tuple[Any, ...]) -> tuple[Any, Any]:
    return (shape[2], shape[3]) if _channels_first(shape) else (shape[1], shape[2])


def _convert(function: Any, input_signature: list[Any], path: Path) -> None:
    # tf2onnx logs each node at INFO; keep its warnings and errors (unsupported ops).
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    try:
        tf2onnx.convert.from_function(
            function, input_signature=input_signature, opset=OPSET, output_path=str(path)
        )
    except Exception as exc:
        raise ExportError(f"tf2onnx could not convert the model: {exc}") from exc
