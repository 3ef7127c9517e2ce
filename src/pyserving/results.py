"""The values a classification returns: plain frozen dataclasses, shared by server and client."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


STATES = ("LOADING", "AVAILABLE", "UNLOADING", "END", "FAILED")


@dataclass(frozen=True)
class VersionStatus:
    """Where one version is in its lifecycle; `error` says why a FAILED version failed."""

    version: int
    state: str  # one of STATES
    error: str = ""
    engine: str = ""  # what runs an AVAILABLE version: onnxruntime or openvino
    precision: str = ""  # f32, bf16, or int8 for a quantised export


@dataclass(frozen=True)
class ModelStatus:
    """The versions of one model the server knows about, oldest first."""

    name: str
    versions: tuple[VersionStatus, ...]


@dataclass(frozen=True)
class Scores:
    """Class probabilities for a batch of inputs, `probabilities[i, j]` for input i, class j."""

    probabilities: np.ndarray  # float32 [N, classes]
    labels: tuple[str, ...]
    model_name: str
    model_version: int
