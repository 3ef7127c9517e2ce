"""Check an exported ONNX model against its source framework before it becomes a version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from pyserving.errors import ExportError
from pyserving.export.write import Progress
from pyserving.reference import write_reference

# Domains whose operators ONNX Runtime implements; an op elsewhere is foreign to ONNX.
_KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


@dataclass(frozen=True)
class Agreement:
    """How the exported model's outputs compare with the source framework's."""

    max_abs_difference: float
    classes: int
    looks_like: Literal["logits", "probabilities"]


def sample_images(height: int, width: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """Deterministic test images: random noise plus smooth gradients, uint8 [N,H,W,3]."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    images[0] = np.stack([np.tile(ramp, (height, 1))] * 3, axis=-1).astype(np.uint8)
    return images


def load_session(model: Path | bytes) -> ort.InferenceSession:
    """An ONNX Runtime session for `model` (a file or its bytes).

    Raises ExportError naming the operators ONNX lacks when that is why it cannot load:
    converters such as tf2onnx only log them and write a model ONNX Runtime refuses.
    """
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as exc:
        foreign = unsupported_ops(model)
        if foreign:
            raise ExportError(
                f"the converted model uses operations that ONNX does not have: "
                f"{', '.join(foreign)}. Export a model without them; for images, one that "
                "takes decoded pixels (pyserving decodes and resizes images itself)"
            ) from exc
        raise ExportError(f"ONNX Runtime cannot load the exported model: {exc}") from exc


def unsupported_ops(model: Path | bytes) -> list[str]:
    """Names of the operators in `model`, subgraphs included, that no ONNX domain defines.

    Empty when onnx is not installed: the names only make an error message better.
    """
    try:
        import onnx
    except ImportError:
        return []
    try:
        proto = onnx.load(str(model)) if isinstance(model, Path) else onnx.load_from_string(model)
    except Exception:
        return []
    found = set()
    for node in _nodes(proto.graph):
        known = node.domain in _KNOWN_DOMAINS
        if not known or (
            node.domain != "com.microsoft" and not onnx.defs.has(node.op_type, node.domain)
        ):
            found.add(node.op_type if not node.domain else f"{node.domain}.{node.op_type}")
    return sorted(found)


def _nodes(graph: Any) -> Any:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def run_onnx(
    session: ort.InferenceSession, input_name: str, output_name: str, inputs: np.ndarray
) -> np.ndarray:
    """The `output_name` tensor for `inputs`; ExportError if ONNX Runtime fails."""
    try:
        (outputs,) = session.run([output_name], {input_name: inputs})
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot run the exported model: {exc}") from exc
    return np.asarray(outputs)


def looks_like(scores: np.ndarray) -> Literal["logits", "probabilities"]:
    """ "probabilities" if every row is non-negative and sums to 1, else "logits"."""
    rows = scores.reshape(len(scores), -1).astype(np.float64)
    if np.all(rows >= 0) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def compare(
    model_path: Path,
    input_name: str,
    output_name: str,
    inputs: np.ndarray,
    reference: Callable[[np.ndarray], np.ndarray],
    framework: str,
    progress: Progress,
    tolerance: float = 1e-3,
) -> Agreement:
    """Run `inputs` through ONNX Runtime and through `reference` (the source framework).

    The outputs must be [N, classes] and agree within `tolerance`, relative to their
    magnitude when that is above 1. Raises ExportError saying how they differ. The inputs
    and the framework's outputs are stored beside the model as its reference set.
    """
    progress.step(f"verifying ONNX Runtime against {framework} on {len(inputs)} inputs")
    ours = run_onnx(load_session(model_path), input_name, output_name, inputs)
    theirs = np.asarray(reference(inputs))
    if ours.shape != theirs.shape:
        raise ExportError(
            f"ONNX output {output_name!r} has shape {ours.shape} but {framework} gives "
            f"{theirs.shape} for the same {len(inputs)} inputs"
        )
    if ours.ndim != 2:
        raise ExportError(
            f"output {output_name!r} has shape {ours.shape}; a classifier's scores must be "
            "[batch, classes]"
        )
    if not np.all(np.isfinite(ours)):
        raise ExportError(f"ONNX output {output_name!r} holds NaN or infinite values")
    diff = float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64))))
    allowed = tolerance * max(1.0, float(np.max(np.abs(theirs))))
    if not diff <= allowed:
        raise ExportError(
            f"ONNX and {framework} disagree: max abs difference {diff:.2e} (allowed {allowed:.2e})"
        )
    kind = looks_like(theirs)
    write_reference(model_path.parent, inputs, theirs)
    progress.step(f"outputs agree: max abs difference on {kind} {diff:.2e}")
    return Agreement(diff, int(ours.shape[1]), kind)
