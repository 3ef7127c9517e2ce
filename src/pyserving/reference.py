"""The reference set of a version: inputs and the source framework's outputs on them.

The exporter stores it as `reference.npz` (arrays `inputs` and `outputs`, no pickles) beside
`model.onnx`. The server runs it through an engine before it serves that engine at a
reduced precision: top-1 must agree on every input and the largest probability difference
must stay within a tolerance.

A tensor model's set names every input and output (`TensorReference`: arrays `input_0`,
`input_1`, ... with their names in `input_names`, the same for outputs, strings as unicode
arrays). An engine passes it when each float output is within the tolerance of the stored
one, relative to that output's largest magnitude (at least 1), and every other output is
equal.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyserving.errors import ServableError
from pyserving.postprocess import softmax

REFERENCE_FILE = "reference.npz"


@dataclass(frozen=True)
class ReferenceSet:
    """Model inputs, as the graph takes them, and the scores the source framework gave."""

    inputs: np.ndarray
    outputs: np.ndarray  # [N, classes], logits or probabilities as the signature says


@dataclass(frozen=True)
class ReferenceCheck:
    """How an engine's scores on the reference inputs compare with the stored ones."""

    inputs: int
    top1_mismatches: int
    max_probability_difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.top1_mismatches == 0 and self.max_probability_difference <= self.tolerance

    def describe(self) -> str:
        """One line with the numbers, e.g. for a FAILED status."""
        return (
            f"top-1 differs on {self.top1_mismatches} of {self.inputs} reference inputs, "
            f"largest probability difference {self.max_probability_difference:.4f} "
            f"(tolerance {self.tolerance:g})"
        )


def write_reference(folder: Path, inputs: np.ndarray, outputs: np.ndarray) -> None:
    """Store `inputs` and `outputs` (one row per input) as the reference set of `folder`."""
    if len(inputs) != len(outputs) or not len(inputs):
        raise ValueError(f"{len(inputs)} reference inputs but {len(outputs)} outputs")
    with (folder / REFERENCE_FILE).open("wb") as f:
        np.savez_compressed(f, inputs=inputs, outputs=np.asarray(outputs, dtype=np.float32))


def load_reference(folder: Path) -> ReferenceSet | None:
    """The reference set of the version in `folder`, or None if it has none.

    Raises ServableError when the file is there but unreadable or inconsistent.
    """
    path = folder / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            inputs, outputs = np.asarray(data["inputs"]), np.asarray(data["outputs"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ServableError(f"{path}: not a reference set ({exc})") from exc
    if outputs.ndim != 2 or len(inputs) != len(outputs) or not len(inputs):
        raise ServableError(
            f"{path}: expected N inputs and N rows of outputs, got inputs {inputs.shape} "
            f"and outputs {outputs.shape}"
        )
    return ReferenceSet(inputs, outputs)


def check_reference(
    reference: ReferenceSet, outputs: np.ndarray, logits: bool, tolerance: float
) -> ReferenceCheck:
    """Compare `outputs` (an engine's scores on `reference.inputs`) with the stored ones."""
    ours = np.asarray(outputs, dtype=np.float64).reshape(reference.outputs.shape)
    theirs = reference.outputs.astype(np.float64)
    if logits:
        ours, theirs = softmax(ours), softmax(theirs)
    mismatches = int(np.sum(ours.argmax(axis=1) != theirs.argmax(axis=1)))
    difference = float(np.max(np.abs(ours - theirs)))
    return ReferenceCheck(len(theirs), mismatches, difference, tolerance)


@dataclass(frozen=True)
class TensorReference:
    """A tensor model's reference set: named inputs and the outputs ONNX Runtime gave."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorCheck:
    """How an engine's outputs on a tensor reference set compare with the stored ones."""

    output: str  # the output that differs most
    max_relative_difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_relative_difference <= self.tolerance

    def describe(self) -> str:
        """One line with the numbers, e.g. for a FAILED status."""
        return (
            f"output {self.output!r} differs by {self.max_relative_difference:.4g} relative to "
            f"its scale (tolerance {self.tolerance:g})"
        )


def write_tensor_reference(
    folder: Path, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
) -> None:
    """Store named `inputs` and `outputs` as the reference set of a tensor model in `folder`."""
    arrays: dict[str, np.ndarray] = {
        "input_names": np.array(list(inputs), dtype=str),
        "output_names": np.array(list(outputs), dtype=str),
    }
    for prefix, named in (("input", inputs), ("output", outputs)):
        for i, array in enumerate(named.values()):
            array = np.asarray(array)
            arrays[f"{prefix}_{i}"] = array.astype(str) if array.dtype == object else array
    with (folder / REFERENCE_FILE).open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy stubs: names clash


def load_tensor_reference(folder: Path) -> TensorReference | None:
    """The tensor reference set of the version in `folder`, or None if it has none.

    Strings come back as object arrays, as ONNX Runtime takes them. Raises ServableError
    when the file is there but unreadable.
    """
    path = folder / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            named = []
            for prefix in ("input", "output"):
                names = [str(n) for n in data[f"{prefix}_names"]]
                named.append({n: _unstring(data[f"{prefix}_{i}"]) for i, n in enumerate(names)})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ServableError(f"{path}: not a tensor reference set ({exc})") from exc
    return TensorReference(named[0], named[1])


def check_tensors(
    reference: TensorReference, outputs: Mapping[str, np.ndarray], tolerance: float
) -> TensorCheck:
    """Compare `outputs` (an engine's, on `reference.inputs`) with the stored outputs."""
    worst, largest = "", 0.0
    for name, theirs in reference.outputs.items():
        ours = np.asarray(outputs.get(name))
        difference = _difference(ours, theirs)
        if difference > largest or not worst:
            worst, largest = name, difference
    return TensorCheck(worst, largest, tolerance)


def _difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    if ours.shape != theirs.shape:
        return float("inf")
    if theirs.dtype.kind != "f":
        return 0.0 if np.array_equal(ours, theirs) else float("inf")
    if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        return float("inf")
    ours64, theirs64 = ours.astype(np.float64), theirs.astype(np.float64)
    finite = np.isfinite(theirs64)
    if not np.array_equal(ours64[~finite], theirs64[~finite], equal_nan=True):
        return float("inf")
    if not finite.any():
        return 0.0
    scale = max(1.0, float(np.max(np.abs(theirs64[finite]))))
    return float(np.max(np.abs(ours64[finite] - theirs64[finite]))) / scale


def _unstring(array: np.ndarray) -> np.ndarray:
    return array.astype(object) if array.dtype.kind == "U" else array
