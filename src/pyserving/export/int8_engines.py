"""A model's scores through each engine the server may run it on: ONNX Runtime, and
OpenVINO where it is installed.

Their int8 kernels round differently (on EfficientNet-Lite0 the logits of one photo differ
by about 0.3 between them), so an int8 export measures agreement and picks its reference
set on every engine here, not on ONNX Runtime alone: else the server's check of the
reference set could refuse the faster engine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from pyserving.export.verify import load_session, run_onnx
from pyserving.signature import Signature

__all__ = ["BATCH", "engine_scores", "onnxruntime_scores"]

BATCH = 8


def engine_scores(model: Path, signature: Signature, images: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of `images` per engine name, ONNX Runtime's first."""
    scores = {"onnxruntime": onnxruntime_scores(model, signature, images)}
    compiled = _openvino_model(model)
    if compiled is not None:
        scores["openvino"] = _openvino_scores(compiled, signature, images)
    return scores


def onnxruntime_scores(model: Path, signature: Signature, images: np.ndarray) -> np.ndarray:
    """ONNX Runtime's scores of `images`, in batches."""
    session = load_session(model)
    return np.concatenate(
        [
            run_onnx(session, signature.input_name, signature.output_name, images[i : i + BATCH])
            for i in range(0, len(images), BATCH)
        ]
    )


def _openvino_model(model: Path) -> Any:
    """`model` compiled by OpenVINO for the CPU as the server compiles it; None where
    OpenVINO is not installed or cannot compile it (the server then cannot run it there)."""
    # As the server's engine does: no usage event leaves the machine on import.
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    try:
        import openvino
    except ImportError:
        return None
    try:
        return openvino.Core().compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception:
        return None


def _openvino_scores(compiled: Any, signature: Signature, images: np.ndarray) -> np.ndarray:
    request = compiled.create_infer_request()
    output = compiled.output(signature.output_name)
    return np.concatenate(
        [
            np.array(request.infer({signature.input_name: images[i : i + BATCH]})[output])
            for i in range(0, len(images), BATCH)
        ]
    )
