"""An existing ONNX model as a servable, its input and output read from the model itself.

Image models taking float pixels (NCHW or NHWC) get a small preamble of ONNX nodes, so
that like every image servable they take `image`, uint8 NHWC, and normalise inside the
graph. The check runs the original model on the same pixels normalised with numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from pyserving.export.labels import Labels, match_labels, read_labels
from pyserving.export.quantize import QUANTIZE_STEPS, Calibration, QuantizeOptions, load_calibration
from pyserving.export.verify import compare, load_session, run_onnx, sample_images
from pyserving.export.write import Progress, missing_extra, provenance, write_servable
from pyserving.kinds import write_signature
from pyserving.kinds.features import FeatureFields
from pyserving.signature import MODEL_FILE, Signature

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:
    raise missing_extra("onnx", "onnx") from exc

__all__ = ["export_onnx"]

STEPS = 5  # read, wrap, verify, agree, wrote
FLOATS = {
    TensorProto.FLOAT: np.float32,
    TensorProto.DOUBLE: np.float64,
    TensorProto.FLOAT16: np.float16,
}
SAMPLE_ROWS = 64
_PREFIX = "pyserving_"


def export_onnx(
    model: Path | str,
    repository: Path | str,
    name: str,
    *,
    labels: Labels,
    input_size: int | Sequence[int] | None = None,
    features: Sequence[str] | str | None = None,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1 / 255,
    layout: Literal["auto", "NCHW", "NHWC"] = "auto",
    output: str | None = None,
    scores: Literal["logits", "probabilities"] | None = None,
    background: bool = False,
    resize: str = "bilinear",
    top_k: int = 5,
    tolerance: float = 1e-4,
    source: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    quantize: QuantizeOptions | None = None,
) -> Path:
    """Wrap the ONNX model in `model` (a file) as a servable; returns its version folder.

    A 4-D input is an image model: `(x / 255 - mean) / std` (0–1 scale; by default the
    pixels as floats 0–255) is put in front of float inputs, then NHWC→NCHW if the model
    takes NCHW. A 2-D float input is a features model and needs `features`, its columns'
    names in order. With `quantize`, an image model is replaced by its int8 version once
    verified (see `pyserving.export.quantize`).
    """
    if quantize is not None and features is not None:
        raise ExportError(
            "--quantize int8 applies to image models; a features model (--features) is "
            "exported f32 only"
        )
    progress = progress or Progress(STEPS + (QUANTIZE_STEPS if quantize else 0))
    class_names = read_labels(labels)
    progress.step(f"reading {model}")
    proto = _load(Path(model))
    (inp,) = _inputs(proto, Path(model))
    out_name = _output(proto, output)
    original = load_session(proto.SerializeToString())
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(proto)
    if features is not None:
        names = _names(features)
        plan = _features_plan(wrapped, _inputs(wrapped, Path(model))[0], names)
    else:
        names = ()
        plan = _image_plan(wrapped, _inputs(wrapped, Path(model))[0], input_size, mean, std, layout)
    calibration: Calibration | None = None
    if quantize is not None:
        height, width = plan.samples.shape[1:3]
        calibration = load_calibration(quantize, height, width, resize, progress)

    def reference(batch: np.ndarray) -> np.ndarray:
        return run_onnx(original, inp.name, out_name, plan.prepare(batch))

    def write(folder: Path) -> None:
        progress.step(plan.describe)
        onnx.save(wrapped, str(folder / MODEL_FILE))
        agreement = compare(
            folder / MODEL_FILE,
            plan.input_name,
            out_name,
            plan.samples,
            reference,
            "the original ONNX model",
            progress,
            tolerance,
        )
        details = {
            "model": Path(model).name,
            "original_input": inp.name,
            **(source or {}),
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "max_abs_difference": agreement.max_abs_difference,
        }
        origin = provenance("onnx", **details)
        if not names:
            height, width = plan.samples.shape[1:3]
            choices = ImageChoices(class_names, background, scores, resize, top_k)
            write_image_signature(
                folder, (height, width), out_name, agreement, origin, choices, calibration, progress
            )
            return
        matched = match_labels(class_names, agreement.classes, background)
        signature = Signature(
            kind="features",
            input_name=plan.input_name,
            input_dtype="float32",
            output_name=out_name,
            scores=scores or agreement.looks_like,
            labels=matched,
            top_k=max(1, min(top_k, len(matched))),
            fields=FeatureFields(names),
            source=origin,
        )
        write_signature(signature, folder)  # f32 only: --quantize was refused for features

    path = write_servable(Path(repository), name, write)
    progress.step(f"wrote {path}")
    return path


class _Plan:
    """How the servable's input becomes the original model's input."""

    def __init__(
        self,
        input_name: str,
        samples: np.ndarray,
        describe: str,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channels_first: bool = False,
        dtype: Any = np.float32,
    ) -> None:
        self.input_name = input_name
        self.samples = samples
        self.describe = describe
        self._mean = np.asarray(mean, dtype=np.float32)
        self._std = np.asarray(std, dtype=np.float32)
        self._channels_first = channels_first
        self._dtype = dtype

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        """What the original model takes for `batch`, computed with numpy."""
        if batch.ndim == 4 and batch.dtype == np.uint8 and self._dtype != np.uint8:
            x = (batch.astype(np.float32) - self._mean) / self._std
            batch = x.transpose(0, 3, 1, 2) if self._channels_first else x
        return np.ascontiguousarray(batch.astype(self._dtype))


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ExportError(f"{path} is not an ONNX model: {exc}") from exc


def _inputs(proto: onnx.ModelProto, path: Path) -> list[Any]:
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ExportError(
            f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
            "pyserving serves models with one input"
        )
    return inputs


def _output(proto: onnx.ModelProto, wanted: str | None) -> str:
    outputs = {str(o.name): o for o in proto.graph.output}
    scores = [n for n, o in outputs.items() if o.type.tensor_type.elem_type in FLOATS]
    if wanted is not None:
        if wanted not in outputs:
            raise ExportError(f"the model has no output {wanted!r}; it has {sorted(outputs)}")
        if wanted not in scores:
            raise ExportError(
                f"output {wanted!r} is not a float tensor (a ZipMap of dicts?): pyserving "
                "needs scores [N, classes]; skl2onnx gives them with options={'zipmap': False}"
            )
        return wanted
    if len(scores) != 1:
        raise ExportError(
            f"the model has outputs {sorted(outputs)}, {len(scores)} of them float tensors; "
            "choose the scores with --output"
        )
    return scores[0]


def _shape(value: Any) -> list[int | None]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _names(features: Sequence[str] | str) -> tuple[str, ...]:
    names = (
        tuple(n.strip() for n in features.split(","))
        if isinstance(features, str)
        else tuple(features)
    )
    if not names or not all(names) or len(set(names)) != len(names):
        raise ExportError(f"features must be distinct non-empty names, got {list(names)}")
    return names


def _features_plan(proto: onnx.ModelProto, inp: Any, names: tuple[str, ...]) -> _Plan:
    """Plan the features input; adds a cast to `proto` for models on doubles."""
    shape, elem = _shape(inp), inp.type.tensor_type.elem_type
    if len(shape) != 2 or elem not in FLOATS:
        raise ExportError(
            f"input {inp.name!r} is not a float matrix [N, features] (shape {shape}); "
            "--features applies to models on named features"
        )
    if shape[1] is not None and shape[1] != len(names):
        raise ExportError(f"the model takes {shape[1]} features but {len(names)} were named")
    samples = np.random.default_rng(0).normal(size=(SAMPLE_ROWS, len(names))).astype(np.float32)
    if elem == TensorProto.FLOAT:
        return _Plan(inp.name, samples, "the model takes float32 features as they are")
    new_name = _fresh_name(inp.name, "features")
    nodes = [helper.make_node("Cast", [new_name], [inp.name], to=elem)]
    _replace_input(proto, inp, new_name, TensorProto.FLOAT, [_dim(inp, 0), len(names)], nodes)
    return _Plan(new_name, samples, "adding a cast float32 → model's floats", dtype=FLOATS[elem])


def _image_plan(
    proto: onnx.ModelProto,
    inp: Any,
    input_size: int | Sequence[int] | None,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    layout: str,
) -> _Plan:
    """Plan the image input; adds cast, normalisation and transpose nodes to `proto`."""
    shape, elem = _shape(inp), inp.type.tensor_type.elem_type
    if len(shape) != 4:
        raise ExportError(
            f"input {inp.name!r} has shape {shape}: neither images [N, H, W, 3] nor "
            "features [N, F] (for features give --features)"
        )
    if layout == "auto":
        layout = "NHWC" if shape[3] == 3 else "NCHW"
    first = layout == "NCHW"
    if layout not in ("NHWC", "NCHW") or shape[1 if first else 3] not in (3, None):
        raise ExportError(
            f"input {inp.name!r} has shape {shape}: expected 3 colour channels, "
            "[N, H, W, 3] or [N, 3, H, W]"
        )
    height, width = image_size(input_size, (shape[2], shape[3]) if first else (shape[1], shape[2]))
    samples = sample_images(height, width)
    if elem == TensorProto.UINT8:
        if first:
            raise ExportError(f"input {inp.name!r} is uint8 NCHW; pyserving feeds uint8 NHWC")
        if pixel_normalisation(mean, std) != pixel_normalisation(0.0, 1 / 255):
            raise ExportError(
                "the model takes uint8 pixels and normalises them itself: drop --mean/--std"
            )
        describe = "the model takes uint8 NHWC pixels as they are"
        return _Plan(inp.name, samples, describe, dtype=np.uint8)
    if elem not in FLOATS:
        raise ExportError(
            f"input {inp.name!r} is {TensorProto.DataType.Name(elem)}; "
            "expected float or uint8 pixels"
        )
    mean_px, std_px = pixel_normalisation(mean, std)
    new_name = _fresh_name(inp.name, INPUT_NAME)
    pre = _PREFIX
    nodes = [
        helper.make_node("Cast", [new_name], [pre + "float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", [pre + "float", pre + "mean"], [pre + "centred"]),
        helper.make_node("Div", [pre + "centred", pre + "std"], [pre + "normalised"]),
    ]
    last = pre + "normalised"
    if first:
        nodes.append(helper.make_node("Transpose", [last], [pre + "nchw"], perm=[0, 3, 1, 2]))
        last = pre + "nchw"
    nodes.append(helper.make_node("Cast", [last], [inp.name], to=elem))
    proto.graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(mean_px, dtype=np.float32), pre + "mean"),
            numpy_helper.from_array(np.asarray(std_px, dtype=np.float32), pre + "std"),
        ]
    )
    _replace_input(proto, inp, new_name, TensorProto.UINT8, [_dim(inp, 0), height, width, 3], nodes)
    describe = f"adding uint8 NHWC input {new_name!r}, normalisation" + (
        ", NHWC→NCHW" if first else ""
    )
    return _Plan(new_name, samples, describe, mean_px, std_px, first, FLOATS[elem])


def _fresh_name(taken: str, wanted: str) -> str:
    return wanted if wanted != taken else _PREFIX + wanted


def _dim(value: Any, axis: int) -> str | int:
    dim = value.type.tensor_type.shape.dim[axis]
    return dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "N")


def _replace_input(
    proto: onnx.ModelProto,
    inp: Any,
    new_name: str,
    elem: int,
    shape: list[str | int],
    nodes: list[Any],
) -> None:
    """Make `new_name` the graph's input and compute the old one from it with `nodes`."""
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 7:
        raise ExportError(f"the model uses ONNX opset {opset}; pyserving needs 7 or newer")
    position = list(proto.graph.input).index(inp)
    new_input = helper.make_tensor_value_info(new_name, elem, shape)
    proto.graph.input.remove(inp)
    proto.graph.input.insert(position, new_input)
    old = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend([*nodes, *old])
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the model with pyserving's input nodes is invalid: {exc}") from exc
