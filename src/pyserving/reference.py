"""The reference set of a version: inputs and the source framework's outputs on them.

The exporter stores it as `reference.npz` (arrays `inputs` and `outputs`, no pickles) beside
`model.onnx`. The server runs it through an engine before it serves that engine at a
reduced precision: top-1 must agree on every input and the largest probability difference
must stay within a tolerance.
"""

from __future__ import annotations

import zipfile
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
