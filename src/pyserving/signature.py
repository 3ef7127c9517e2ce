"""The servable format: `servable.json` and `labels.txt`, read, validated and written here only.

A version folder, named by a positive integer, holds `model.onnx`, `servable.json` (the
signature) and `labels.txt` (one class name per line; line i is class i). Example `servable.json`::

    {"format": 1, "kind": "image",
     "input": {"name": "image", "dtype": "uint8", "layout": "NHWC",
               "height": 224, "width": 224, "resize": "bilinear"},
     "output": {"name": "logits", "scores": "logits", "classes": 1000},
     "top_k": 5,
     "source": {"framework": "pytorch", "model": "efficientnet-lite0", ...}}

A quantised export adds `"precision": "int8"`; f32 is the default. `reference.npz` beside
them (see `pyserving.reference`) holds the exporter's reference set.

`kind: features` models have `"input": {"name": ..., "dtype": "float32", "features": [...]}`;
`kind: text` models `"input": {"name": ..., "dtype": "string", "whitespace": "collapse"}`;
`kind: audio` models `"input": {"name": ..., "dtype": "float32", "sample_rate": 16000}`.
`kind: tensor` models (any ONNX model, served as raw tensors) list every input and output,
and have an empty `labels.txt`::

    {"format": 1, "kind": "tensor",
     "input": {"name": "x", "dtype": "float32", "batch_axis": true, "allow_nan": false,
               "tensors": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]},
     "output": {"name": "y", "tensors": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]},
     "source": {...}}

The kind's own fields of the `input` section are read and written by its module in
`pyserving.kinds`, and so is the output side (`output`, `top_k` and the labels, through
the kind's `OUTPUT`); this module reads the file and the fields every kind shares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pyserving.errors import ServableError
from pyserving.kinds import KINDS, kind_module
from pyserving.results import TensorSpec

FORMAT = 1
SIGNATURE_FILE = "servable.json"
LABELS_FILE = "labels.txt"
MODEL_FILE = "model.onnx"

REQUIRED_FILES = (SIGNATURE_FILE, LABELS_FILE, MODEL_FILE)  # what makes a version complete

MODEL_PRECISIONS = ("f32", "int8")  # int8: a quantised export; servable.json says so


@dataclass(frozen=True)
class Signature:
    """What a servable takes and gives: everything `servable.json` and `labels.txt` say."""

    kind: Literal["image", "features", "text", "audio", "tensor"]
    input_name: str
    input_dtype: str
    output_name: str
    scores: Literal["logits", "probabilities"] = "logits"
    labels: tuple[str, ...] = ()
    top_k: int = 5
    # image models
    height: int = 0
    width: int = 0
    layout: str = "NHWC"
    resize: str = "bilinear"
    # features models
    features: tuple[str, ...] = ()
    # tensor models: every input and output; whether axis 0 of all of them is the batch (so
    # requests may be concatenated); whether float inputs may hold NaN or infinities
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    batch_axis: bool = False
    allow_nan: bool = False
    # text models: how runs of whitespace are normalised before the model sees the text
    whitespace: str = "collapse"
    # audio models: the samples per second the graph takes
    sample_rate: int = 0
    precision: str = "f32"  # of the weights in model.onnx: f32, or int8 when quantised
    source: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> dict[str, Any]:
        """The `servable.json` document for this signature (labels go to `labels.txt`)."""
        kind = kind_module(self.kind)
        inp: dict[str, Any] = {"name": self.input_name, "dtype": self.input_dtype}
        inp |= kind.section(self)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "input": inp,
            **kind.OUTPUT.section(self),
            "source": self.source,
        }
        if self.precision != "f32":
            doc["precision"] = self.precision
        return doc


def write_signature(signature: Signature, folder: Path) -> None:
    """Write `servable.json` and `labels.txt` into `folder`, after validating the signature."""
    doc = signature.to_json()
    _parse(doc, list(signature.labels), folder / SIGNATURE_FILE)
    (folder / SIGNATURE_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (folder / LABELS_FILE).write_text("".join(f"{label}\n" for label in signature.labels), "utf-8")


def load_signature(folder: Path) -> Signature:
    """Read and validate the signature of the version in `folder`.

    Raises ServableError naming the file and what is wrong with it.
    """
    sig_path = folder / SIGNATURE_FILE
    labels_path = folder / LABELS_FILE
    for path in (sig_path, labels_path):
        if not path.is_file():
            raise ServableError(f"{path}: missing (a servable needs {SIGNATURE_FILE} and labels)")
    try:
        doc = json.loads(sig_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServableError(f"{sig_path}: not valid JSON: {exc}") from exc
    try:
        labels = labels_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServableError(f"{labels_path}: cannot be read as UTF-8 text: {exc}") from exc
    while labels and not labels[-1].strip():
        labels.pop()
    return _parse(doc, labels, sig_path)


def _parse(doc: Any, labels: list[str], path: Path) -> Signature:
    def fail(problem: str) -> ServableError:
        return ServableError(f"{path}: {problem}")

    if not isinstance(doc, dict):
        raise fail("expected a JSON object")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise fail(f"unknown format {fmt!r}; this pyserving reads format {FORMAT}")
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise fail(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")
    inp = _section(doc, "input", fail)
    module = kind_module(kind)
    outputs = module.OUTPUT.parse(doc, labels, fail)
    precision = doc.get("precision", "f32")
    if precision not in MODEL_PRECISIONS:
        raise fail(f"precision {precision!r} is not one of {', '.join(MODEL_PRECISIONS)}")
    common: dict[str, Any] = {
        "kind": kind,
        "input_name": _string(inp, "name", "input", fail),
        "input_dtype": _string(inp, "dtype", "input", fail),
        "precision": precision,
        "source": doc.get("source") or {},
    }
    return Signature(**common, **outputs, **module.parse(inp, fail))


def _section(doc: dict[str, Any], key: str, fail: Any) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise fail(f"missing the {key!r} object")
    return value


def _string(section: dict[str, Any], key: str, where: str, fail: Any) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise fail(f"{where}.{key} must be a non-empty string")
    return value


def list_versions(base_path: Path) -> list[int]:
    """The complete versions under `base_path`, oldest first.

    Only folders named by a positive integer that already hold servable.json, labels.txt
    (empty for a tensor model) and model.onnx count, so the exporter's hidden temporary
    folders and a version still being copied in are never mistaken for a version.
    """
    if not base_path.is_dir():
        return []
    versions = []
    for entry in base_path.iterdir():
        name = entry.name
        if name.isascii() and name.isdigit() and int(name) > 0 and _complete(entry):
            versions.append(int(name))
    return sorted(versions)


def _complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in REQUIRED_FILES)
