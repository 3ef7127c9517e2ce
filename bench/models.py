"""The benchmark's servables: EfficientNet-Lite0 (exported, or reused) and a tiny classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pyserving.kinds import write_signature
from pyserving.kinds.features import FeatureFields
from pyserving.signature import MODEL_FILE, Signature

TINY_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
TINY_LABELS = ("setosa", "versicolor", "virginica")
TINY_INPUT = dict(zip(TINY_FEATURES, (5.1, 3.5, 1.4, 0.2), strict=True))


def imagenet_base_path(repository: Path | None, scratch: Path, name: str = "imagenet") -> Path:
    """The folder of model `name`'s versions: under `repository`, or exported into `scratch`."""
    if repository is not None:
        base = repository / name
        if not any(p.name.isdigit() for p in base.glob("*")):
            raise SystemExit(f"error: {base} holds no version of model {name!r}")
        return base
    from pyserving.export.zoo import export_efficientnet_lite0

    export_efficientnet_lite0(scratch, name)
    return scratch / name


def write_tiny_servable(base: Path, version: int = 1) -> Path:
    """A four-feature, three-class linear classifier (iris-like) as version `version`."""
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(len(TINY_FEATURES), len(TINY_LABELS))).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "W"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(TINY_FEATURES)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(TINY_LABELS)])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(folder / MODEL_FILE))
    write_signature(
        Signature(
            kind="features",
            input_name="features",
            input_dtype="float32",
            output_name="logits",
            scores="logits",
            labels=TINY_LABELS,
            fields=FeatureFields(TINY_FEATURES),
        ),
        folder,
    )
    return base


def newest_version(base: Path) -> Path:
    """The newest version folder under a model's base path."""
    versions = [p for p in base.iterdir() if p.name.isdigit() and int(p.name) > 0]
    if not versions:
        raise SystemExit(f"error: no version of a model under {base}")
    return max(versions, key=lambda p: int(p.name))
