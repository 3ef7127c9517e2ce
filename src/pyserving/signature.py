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

Plain data that imports nothing else of pyserving but its errors: the kinds import it.
This module reads and writes the files, the fields every kind shares and a classifier's
output side (`output`, `top_k` and the labels); each kind's own fields are a `KindFields`
value that its module in `pyserving.kinds` defines, parses (the `ReadKind` given to
`load_signature` and `write_signature`) and writes back (`input_json`, `output_json`).
`pyserving.kinds.load_signature` and `write_signature` pass the kinds' reader.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pyserving.errors import ServableError

FORMAT = 1
SIGNATURE_FILE = "servable.json"
LABELS_FILE = "labels.txt"
MODEL_FILE = "model.onnx"

REQUIRED_FILES = (SIGNATURE_FILE, LABELS_FILE, MODEL_FILE)  # what makes a version complete

MODEL_PRECISIONS = ("f32", "int8")  # int8: a quantised export; servable.json says so
SCORE_KINDS = ("logits", "probabilities")

Fail = Callable[[str], ServableError]  # makes the error for a problem in the file read


class KindFields(Protocol):
    """A kind's own fields of a signature, as its module in `pyserving.kinds` defines them."""

    def input_json(self) -> dict[str, Any]:
        """The kind's entries of the `input` section, after `name` and `dtype`."""
        ...

    def output_json(self, signature: Signature) -> dict[str, Any]:
        """The output side as `servable.json` entries: `output`, and `top_k` for classifiers."""
        ...


# Reads a kind's part of servable.json: the `kind` as found (refused when unknown), the
# document (its `input` is an object) and the labels; gives the Signature's other fields:
# `fields` and the output side.
ReadKind = Callable[[object, dict[str, Any], list[str], Fail], dict[str, Any]]


@dataclass(frozen=True)
class Signature:
    """What a servable takes and gives: everything `servable.json` and `labels.txt` say.

    `fields` are the kind's own (an image's size, a features model's names, a tensor
    model's tensors); only the kind's module reads them.
    """

    kind: str  # a name in pyserving.kinds.KINDS
    input_name: str
    input_dtype: str
    fields: KindFields
    output_name: str
    # the classifier's output side (a tensor model has its outputs in its fields)
    scores: Literal["logits", "probabilities"] = "logits"
    labels: tuple[str, ...] = ()
    top_k: int = 5
    precision: str = "f32"  # of the weights in model.onnx: f32, or int8 when quantised
    source: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> dict[str, Any]:
        """The `servable.json` document for this signature (labels go to `labels.txt`)."""
        inp: dict[str, Any] = {"name": self.input_name, "dtype": self.input_dtype}
        inp |= self.fields.input_json()
        doc: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "input": inp,
            **self.fields.output_json(self),
            "source": self.source,
        }
        if self.precision != "f32":
            doc["precision"] = self.precision
        return doc


def write_signature(signature: Signature, folder: Path, read_kind: ReadKind) -> None:
    """Write `servable.json` and `labels.txt` into `folder`, after validating the signature
    as `load_signature` would read it back."""
    doc = signature.to_json()
    _parse(doc, list(signature.labels), folder / SIGNATURE_FILE, read_kind)
    (folder / SIGNATURE_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (folder / LABELS_FILE).write_text("".join(f"{label}\n" for label in signature.labels), "utf-8")


def load_signature(folder: Path, read_kind: ReadKind) -> Signature:
    """Read and validate the signature of the version in `folder`; `read_kind` reads the
    kind's part.

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
    return _parse(doc, labels, sig_path, read_kind)


def _parse(doc: Any, labels: list[str], path: Path, read_kind: ReadKind) -> Signature:
    def fail(problem: str) -> ServableError:
        return ServableError(f"{path}: {problem}")

    if not isinstance(doc, dict):
        raise fail("expected a JSON object")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise fail(f"unknown format {fmt!r}; this pyserving reads format {FORMAT}")
    kind = doc.get("kind")
    inp = doc.get("input")
    if not isinstance(inp, dict):
        raise fail("missing the 'input' object")
    precision = doc.get("precision", "f32")
    if precision not in MODEL_PRECISIONS:
        raise fail(f"precision {precision!r} is not one of {', '.join(MODEL_PRECISIONS)}")
    name, dtype = _string(inp, "name", "input", fail), _string(inp, "dtype", "input", fail)
    own = read_kind(kind, doc, labels, fail)  # refuses an unknown kind first
    return Signature(
        kind=str(kind),
        input_name=name,
        input_dtype=dtype,
        precision=precision,
        source=doc.get("source") or {},
        **own,
    )


def parse_classes(doc: dict[str, Any], labels: list[str], fail: Fail) -> dict[str, Any]:
    """A classifier's output side: `output` {name, scores, classes}, the labels, `top_k`."""
    out = doc.get("output")
    if not isinstance(out, dict):
        raise fail("missing the 'output' object")
    scores = out.get("scores", "logits")
    if scores not in SCORE_KINDS:
        raise fail(f"output.scores is {scores!r}; expected one of {', '.join(SCORE_KINDS)}")
    classes = out.get("classes")
    if not isinstance(classes, int) or classes < 1:
        raise fail(f"output.classes must be a positive integer, got {classes!r}")
    if len(labels) != classes:
        raise fail(f"labels.txt has {len(labels)} labels but the output has {classes} classes")
    top_k = doc.get("top_k", 5)
    if not isinstance(top_k, int) or top_k < 1:
        raise fail(f"top_k must be a positive integer, got {top_k!r}")
    name = out.get("name")
    if not isinstance(name, str) or not name:
        raise fail("output.name must be a non-empty string")
    return {
        "output_name": name,
        "scores": scores,
        "labels": tuple(labels),
        "top_k": min(top_k, classes),
    }


def classes_json(signature: Signature) -> dict[str, Any]:
    """A classifier's output side as `servable.json` writes it (labels go to labels.txt)."""
    return {
        "output": {
            "name": signature.output_name,
            "scores": signature.scores,
            "classes": signature.num_classes,
        },
        "top_k": signature.top_k,
    }


def _string(section: dict[str, Any], key: str, where: str, fail: Fail) -> str:
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


def hidden_folder(parent: Path, tag: str) -> Path:
    """A new hidden folder in `parent` for a version being written, `.TAG-HOST-PID-...`.

    Its name is no version, so nothing loads it half-written; it says whose it is, so the
    folders this host's killed writers left behind (their process is gone) are removed
    first. Raises OSError.
    """
    host = socket.gethostname()
    for entry in parent.glob(f".{tag}-{host}-*-*"):
        pid = entry.name.removeprefix(f".{tag}-{host}-").split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{tag}-{host}-{os.getpid()}-", dir=parent))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
