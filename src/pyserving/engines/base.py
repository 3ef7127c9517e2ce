"""The engine interface: how to run a model, what runs it, and what an engine provides.

Plain data and protocols only: the engine modules implement them, the kinds and the
serving core name them, and this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class EngineOptions:
    """How to run a model: precision, threads per call, and calls that may run at once."""

    precision: str = "f32"
    threads: int = 1  # per inference call
    concurrency: int = 1  # calls that run at the same time
    max_batch_size: int = 0  # the largest batch `run` is given; 0: unknown
    graph_optimization_level: str = "all"  # ONNX Runtime only
    cpu_memory_arena: bool = True  # ONNX Runtime only
    execution_provider: str = "cpu"  # ONNX Runtime only: "cpu" or "cuda"
    compiled_model_cache: str = ""  # OpenVINO only: compiled models are kept here; "": none


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of the model: its name, numpy dtype name and shape."""

    name: str
    dtype: str  # "uint8", "float32", ...; "" where the engine cannot say
    shape: tuple[int | str | None, ...]


@dataclass(frozen=True)
class EngineInfo:
    """What runs a version: the engine, its precision and device, and the model's tensors."""

    name: str
    precision: str
    device: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


class Engine(Protocol):
    """A loaded model. `run` is thread-safe and called from worker threads."""

    info: EngineInfo

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output tensor for a batch of the input tensor."""
        ...

    def run_named(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the model, by name, for the named inputs in `feeds`."""
        ...

    def close(self) -> None:
        """Release the model and its memory; `run` fails after this."""
        ...


class EngineModule(Protocol):
    """What each engine module provides."""

    def available(self) -> str | None:
        """None if the engine can run here, else why not (one line)."""
        ...

    def precisions(self) -> tuple[str, ...]:
        """The precisions this engine can run on this machine."""
        ...

    def load(
        self, path: Path, options: EngineOptions, input_name: str = "", output_name: str = ""
    ) -> Engine:
        """Load `path`; empty names pick the model's first input and output."""
        ...
