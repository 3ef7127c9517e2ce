"""Any ONNX model as a tensor servable: inputs and outputs described from the graph.

No labels and no preamble: the model is copied as it is. The check runs it with ONNX
Runtime on generated inputs (`kinds.tensor.sample_feeds`), which become its reference set,
and decides whether requests may be concatenated on axis 0 (`batch_axis`): only when axis 0
of every input and output is the same named dimension and the rows of a batch come out
as they do one at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pyserving.errors import ExportError
from pyserving.export.verify import load_session
from pyserving.export.write import Progress, provenance, write_servable
from pyserving.kinds import write_signature
from pyserving.kinds.tensor import TensorFields, sample_feeds
from pyserving.reference import write_tensor_reference
from pyserving.results import TensorSpec
from pyserving.signature import MODEL_FILE, Signature
from pyserving.tensors import DATATYPES

__all__ = ["export_onnx_tensor"]

STEPS = 4  # read, run, describe, wrote
ROWS = 3  # rows of the generated batch
TOLERANCE = 1e-5  # a batch's rows against the same rows one at a time, relative to scale
_ORT_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def export_onnx_tensor(
    model: Path | str,
    repository: Path | str,
    name: str,
    *,
    allow_nan: bool = False,
    source: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Serve the ONNX model in `model` (a file) as raw tensors; returns its version folder.

    `allow_nan`: float inputs may hold NaN and infinities (the server refuses them
    otherwise). Raises ExportError when ONNX Runtime cannot load or run the model, or when
    an input or output is not a tensor of a datatype the protocols carry.
    """
    path = Path(model)
    progress = progress or Progress(STEPS)
    progress.step(f"reading {path}")
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    data = path.read_bytes()
    session = load_session(data)
    inputs = tuple(_spec(a, "input") for a in session.get_inputs())
    outputs = tuple(_spec(a, "output") for a in session.get_outputs())
    if not inputs:
        raise ExportError(f"{path} has no inputs: there is nothing to send it")
    named_batch = _batch_dimension(session)

    def write(folder: Path) -> None:
        progress.step(f"running it with ONNX Runtime on generated inputs ({_describe(inputs)})")
        feeds = sample_feeds(inputs, rows=ROWS)
        answers = _run(session, feeds)
        batch_axis = named_batch is not None and _rows_independent(session, feeds, answers)
        (folder / MODEL_FILE).write_bytes(data)
        write_tensor_reference(folder, feeds, answers)
        first = inputs[0]
        signature = Signature(
            kind="tensor",
            input_name=first.name,
            input_dtype=DATATYPES[first.datatype],
            output_name=outputs[0].name,
            fields=TensorFields(inputs, outputs, batch_axis, allow_nan),
            source=provenance(
                "onnx",
                model=path.name,
                **(source or {}),
                producer=_producer(data),
            ),
        )
        write_signature(signature, folder)
        batching = (
            f"requests are batched on axis {named_batch!r}"
            if batch_axis
            else "each request runs alone"
            + (" (rows of a batch depend on each other)" if named_batch else "")
        )
        progress.step(f"outputs: {_describe(outputs)}; {batching}")

    version = write_servable(Path(repository), name, write)
    progress.step(f"wrote {version}")
    return version


def _spec(arg: Any, what: str) -> TensorSpec:
    datatype = _ORT_DATATYPES.get(arg.type)
    if datatype is None:
        raise ExportError(
            f"{what} {arg.name!r} is {arg.type}; pyserving serves tensors of "
            f"{', '.join(sorted(set(_ORT_DATATYPES.values())))} (for a scikit-learn classifier, "
            "convert with options={'zipmap': False})"
        )
    if arg.shape is None:
        raise ExportError(f"{what} {arg.name!r} has no shape in the graph; give it one")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


def _batch_dimension(session: Any) -> str | None:
    """The name of axis 0 when every input and output has that same named axis 0."""
    names = set()
    for arg in [*session.get_inputs(), *session.get_outputs()]:
        shape = arg.shape or []
        first = shape[0] if shape else None
        if not isinstance(first, str) or not first or first.startswith("unk__"):
            return None
        names.add(first)
    return names.pop() if len(names) == 1 else None


def _run(session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        answers = session.run(None, dict(feeds))
    except Exception as exc:
        raise ExportError(
            f"ONNX Runtime cannot run the model on generated inputs ({exc}); a tensor model "
            "must accept any values of its datatypes and shapes"
        ) from exc
    return {a.name: np.asarray(v) for a, v in zip(session.get_outputs(), answers, strict=True)}


def _rows_independent(
    session: Any, feeds: Mapping[str, np.ndarray], answers: Mapping[str, np.ndarray]
) -> bool:
    """Whether each row of the batch comes out as it does alone (so batching is safe)."""
    if any(a.ndim == 0 or a.shape[0] != ROWS for a in answers.values()):
        return False
    for row in range(ROWS):
        alone = _run(session, {n: f[row : row + 1] for n, f in feeds.items()})
        for name, answer in answers.items():
            ours, theirs = alone[name], answer[row : row + 1]
            if ours.shape != theirs.shape:
                return False
            if theirs.dtype.kind in "fc":
                scale = max(1.0, float(np.max(np.abs(theirs), initial=0.0)))
                difference = float(np.max(np.abs(ours - theirs), initial=0.0))
                if not difference <= TOLERANCE * scale:
                    return False
            elif not np.array_equal(ours, theirs):
                return False
    return True


def _describe(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in specs)


def _producer(data: bytes) -> str:
    try:
        import onnx
    except ImportError:
        return ""
    proto = onnx.load_from_string(data)
    return f"{proto.producer_name} {proto.producer_version}".strip()
