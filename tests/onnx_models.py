"""Tiny real ONNX models for tests, built with onnx.helper: fast to load, answers known."""

from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from pyserving.kinds import write_signature
from pyserving.kinds.features import FeatureFields
from pyserving.kinds.image import ImageFields
from pyserving.kinds.text import TextFields
from pyserving.signature import MODEL_FILE, Signature


def linear_model(weights: np.ndarray, input_name: str = "features") -> onnx.ModelProto:
    """float32 [N, F] → `logits` float32 [N, C] = x @ weights."""
    features, classes = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "W"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def mean_colour_model(classes: int = 3, size: int = 8) -> onnx.ModelProto:
    """uint8 [N, size, size, 3] → `logits` [N, classes]: mean of each channel (then zeros).

    Class 0/1/2 wins for a red/green/blue image, so answers are easy to predict.
    """
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x", "axes"], ["means"], keepdims=0),
        helper.make_node("Pad", ["means", "pads"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mean_colour",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size, size, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [
            numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array([0, 0, 0, classes - 3], dtype=np.int64), "pads"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def write_image_servable(
    folder: Path, labels: Sequence[str] = ("red", "green", "blue"), size: int = 8
) -> Path:
    """A complete image servable in `folder` (created) using `mean_colour_model`."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(mean_colour_model(len(labels), size), str(folder / MODEL_FILE))
    write_signature(
        Signature(
            kind="image",
            input_name="image",
            input_dtype="uint8",
            output_name="logits",
            scores="logits",
            labels=tuple(labels),
            top_k=2,
            fields=ImageFields(size, size),
        ),
        folder,
    )
    return folder


def write_features_servable(
    folder: Path,
    weights: np.ndarray,
    names: Sequence[str],
    labels: Sequence[str] | None = None,
) -> Path:
    """A complete features servable in `folder` (created) using `linear_model(weights)`."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(linear_model(weights), str(folder / MODEL_FILE))
    write_signature(
        Signature(
            kind="features",
            input_name="features",
            input_dtype="float32",
            output_name="logits",
            scores="logits",
            labels=tuple(labels or (f"class{i}" for i in range(weights.shape[1]))),
            fields=FeatureFields(tuple(names)),
        ),
        folder,
    )
    return folder


TEXT_LABELS = ("a", "b")


@functools.cache
def letters_model_bytes() -> bytes:
    """string [N, 1] → `probabilities` [N, 2]: texts of mostly a's are class a, b's class b.

    A real scikit-learn pipeline (character counts, logistic regression) converted by
    skl2onnx, as the text exporter does it.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["aaaa", "a a a", "aaab", "baaa", "bbbb", "b b b", "bbba", "abbb"]
    model = make_pipeline(CountVectorizer(analyzer="char", lowercase=False), LogisticRegression())
    model.fit(texts, [t.count("a") < t.count("b") for t in texts])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "only tokenizer='word' is fully supported"
        proto = to_onnx(
            model,
            initial_types=[("text", StringTensorType([None, 1]))],
            options={"zipmap": False},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    return bytes(proto.SerializeToString())


def write_text_servable(folder: Path, whitespace: str = "collapse") -> Path:
    """A complete text servable in `folder` (created) using `letters_model_bytes`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(letters_model_bytes())
    write_signature(
        Signature(
            kind="text",
            input_name="text",
            input_dtype="string",
            output_name="probabilities",
            scores="probabilities",
            labels=TEXT_LABELS,
            top_k=1,
            fields=TextFields(whitespace),
        ),
        folder,
    )
    return folder


def regression_model(weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """float32 `x` [N, F] → `y` [N, K] = x @ weights + bias: a regression, not a classifier."""
    features, outputs = weights.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "regression",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])],
        [
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def sum_product_model() -> onnx.ModelProto:
    """int64 `a` and `b` [N] → `sum` = a + b and `product` = a * b, both int64 [N]."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Mul", ["a", "b"], ["product"]),
        ],
        "sum_product",
        [
            helper.make_tensor_value_info("a", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N"]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("product", TensorProto.INT64, ["N"]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


VERSION_CLASSES = 8


def write_version_servable(folder: Path, version: int) -> Path:
    """A one-feature servable whose answer names its version: class `v{version}` wins."""
    weights = np.zeros((1, VERSION_CLASSES), dtype=np.float32)
    weights[0, version % VERSION_CLASSES] = 10.0
    labels = [f"v{i}" for i in range(VERSION_CLASSES)]
    labels[version % VERSION_CLASSES] = f"v{version}"
    return write_features_servable(folder, weights, ["x"], labels)


def publish(base: Path, version: int, write: Callable[[Path], object]) -> Path:
    """Write a version the way the exporter does: into a hidden folder, then rename."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{version}"
    write(tmp)
    final = base / str(version)
    os.rename(tmp, final)
    return final


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A PNG filled with one colour: `mean_colour_model` answers its strongest channel."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def datatypes_model() -> onnx.ModelProto:
    """Strings, half floats and booleans [N]: `text` and `half` come back as they went in,
    `flag` negated. No axis named: it runs without a batch axis."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["s"], ["text"]),
            helper.make_node("Identity", ["h"], ["half"]),
            helper.make_node("Not", ["f"], ["flag"]),
        ],
        "datatypes",
        [
            helper.make_tensor_value_info("s", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT16, [None]),
            helper.make_tensor_value_info("f", TensorProto.BOOL, [None]),
        ],
        [
            helper.make_tensor_value_info("text", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("half", TensorProto.FLOAT16, [None]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, [None]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
