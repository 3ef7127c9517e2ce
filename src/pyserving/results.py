"""The values the service answers with: plain frozen dataclasses, shared by server and client.

No numpy here: the web app and the client import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """One class with its probability. `index` is the class id (the line in labels.txt)."""

    name: str
    score: float
    index: int


@dataclass(frozen=True)
class Classification:
    """The answer to one classify call: classes best first, and which servable gave them."""

    predictions: tuple[Prediction, ...]
    model_name: str
    model_version: int


@dataclass(frozen=True)
class ExplanationPart:
    """One hidden part of the input and its weight: how much hiding it lowered the class's
    probability (negative: hiding it raised it).

    Which fields mean something depends on the kind: `name` for a word or a feature,
    `start` and `end` (seconds) for an audio window, `row` and `column` for an image cell.
    """

    weight: float
    name: str = ""
    start: float = 0.0
    end: float = 0.0
    row: int = 0
    column: int = 0


@dataclass(frozen=True)
class Explanation:
    """The answer to one explain call: why the model gave `explained` (with its score on
    the whole input), part by part, in the input's order (an image's cells row by row).

    `grid` is (rows, columns) for an image and (0, 0) otherwise; `method` says in words how
    a part was hidden.
    """

    model_name: str
    model_version: int
    explained: Prediction
    kind: str
    parts: tuple[ExplanationPart, ...]
    grid: tuple[int, int] = (0, 0)
    method: str = ""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a tensor model: its OIP v2 datatype and shape.

    `datatype` is the protocol's name (FP32, INT64, BOOL, BYTES, ...); -1 in `shape` is an
    axis of any size.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Tensor:
    """A named tensor as plain values: its elements in row-major order (bytes for BYTES)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Inference:
    """The answer to one predict call on a tensor model: every output, and who gave them."""

    outputs: tuple[Tensor, ...]
    model_name: str
    model_version: int


class State(StrEnum):
    """Where a version is in its lifecycle; on the wire, the member's name as a string."""

    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"
    FAILED = "FAILED"


@dataclass(frozen=True)
class VersionStatus:
    """Where one version is in its lifecycle; `error` says why a FAILED version failed."""

    version: int
    state: str  # a State (clients that read the wire get the same strings)
    error: str = ""
    engine: str = ""  # what runs an AVAILABLE version: onnxruntime or openvino
    precision: str = ""  # f32, bf16, or int8 for a quantised export
    kind: str = ""  # what an AVAILABLE version takes: image, features, text, audio or tensor
    features: tuple[str, ...] = ()  # features models: the names, in the model's order
    engine_reason: str = ""  # why it got its engine and precision ("rule: ...", "as asked")
    labels: tuple[str, ...] = ()  # the version labels that name it now (TF Serving's)


@dataclass(frozen=True)
class ModelStatus:
    """The versions of one model the server knows about, oldest first.

    `default`: whether a request that names no model gets this one (set by the client).
    """

    name: str
    versions: tuple[VersionStatus, ...]
    default: bool = False


@dataclass(frozen=True)
class ModelMetadata:
    """What a request needs to know about one available version, as plain values."""

    name: str
    version: int
    versions: tuple[int, ...]  # every available version of the model, oldest first
    kind: str  # the input kind: image, features, text or tensor
    input_name: str
    features: tuple[str, ...]  # features models: the names, in the model's order
    labels: tuple[str, ...]
    top_k: int  # the signature's default
    engine: str  # what runs it: onnxruntime or openvino
    precision: str  # f32, bf16, or int8 for a quantised export
    input_datatype: str = "BYTES"  # on the wire (OIP v2): BYTES, or FP32 for features
    input_shape: tuple[int, ...] = (-1,)  # on the wire, -1 for any size
    # "classes" (classify, and predict as class probabilities) or "tensors" (predict gives
    # the model's named outputs: a tensor model, described by `inputs` and `outputs`)
    answers: str = "classes"
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    # the model's version labels now, (label, version) sorted by label
    version_labels: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Example:
    """One input to classify: encoded bytes (an image, or UTF-8 text), or named features."""

    image: bytes = b""
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassifyRequest:
    """Inputs to classify with one model, and how many classes to return (0: the default)."""

    examples: tuple[Example, ...]
    top_k: int = 0


@dataclass(frozen=True)
class Health:
    """Whether the server (its default model) and each configured model can serve now."""

    server: bool
    models: Mapping[str, bool]
