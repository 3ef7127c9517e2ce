"""Engines that run `model.onnx`: one module each, behind one narrow interface.

An engine is loaded from a model file with `EngineOptions`, runs a batch of one input
tensor to one output tensor (or named inputs to every output, for tensor models),
describes itself, and is closed. Which engine and precision a
version gets is decided in `pyserving.engines.choice`; nothing else imports an engine module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from pyserving.errors import ServableError

ENGINES = {
    "onnxruntime": "pyserving.engines.onnxruntime",
    "openvino": "pyserving.engines.openvino",
}
PRECISIONS = ("f32", "bf16")  # what an engine can be asked for; int8 is a quantised export


@dataclass(frozen=True)
class EngineOptions:
    """How to run a model: precision, threads per call, and calls that may run at once."""

    precision: str = "f32"
    threads: int = 1  # per inference call
    concurrency: int = 1  # calls that run at the same time
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


def engine_module(name: str) -> EngineModule:
    """The module of engine `name`; ServableError for an unknown name."""
    if name not in ENGINES:
        raise ServableError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    module: EngineModule = importlib.import_module(ENGINES[name])  # type: ignore[assignment]
    return module


def load_engine(
    name: str, path: Path, options: EngineOptions, input_name: str = "", output_name: str = ""
) -> Engine:
    """Load `path` with engine `name`. Raises ServableError saying what is missing or wrong."""
    module = engine_module(name)
    missing = module.available()
    if missing:
        raise ServableError(missing)
    if options.precision not in module.precisions():
        raise ServableError(
            f"engine {name} cannot run {options.precision} on this machine "
            f"(it can run: {', '.join(module.precisions())})"
        )
    return module.load(path, options, input_name, output_name)


def pick_tensors(
    path: Path,
    info_inputs: tuple[TensorInfo, ...],
    info_outputs: tuple[TensorInfo, ...],
    input_name: str,
    output_name: str,
) -> tuple[TensorInfo, TensorInfo]:
    """The input and output an engine runs: the named ones, or the model's first."""
    chosen = []
    for wanted, tensors, what in (
        (input_name, info_inputs, "input"),
        (output_name, info_outputs, "output"),
    ):
        by_name = {t.name: t for t in tensors}
        if not tensors:
            raise ServableError(f"{path}: the model has no {what}")
        if wanted and wanted not in by_name:
            raise ServableError(
                f"{path}: has no {what} {wanted!r} (servable.json); its {what}s are "
                f"{sorted(by_name)}"
            )
        chosen.append(by_name[wanted] if wanted else tensors[0])
    return chosen[0], chosen[1]
