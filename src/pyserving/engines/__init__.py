"""Engines that run `model.onnx`: one module each, behind one narrow interface.

An engine is loaded from a model file with `EngineOptions`, runs a batch of one input
tensor to one output tensor (or named inputs to every output, for tensor models),
describes itself, and is closed (the interface: `pyserving.engines.base`). Which engine and
precision a version gets is decided in `pyserving.engines.choice`; nothing else imports an
engine module.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pyserving.engines.base import Engine as Engine
from pyserving.engines.base import EngineInfo as EngineInfo
from pyserving.engines.base import EngineModule as EngineModule
from pyserving.engines.base import EngineOptions as EngineOptions
from pyserving.engines.base import TensorInfo as TensorInfo
from pyserving.errors import ServableError

ENGINES = {
    "onnxruntime": "pyserving.engines.onnxruntime",
    "openvino": "pyserving.engines.openvino",
}
PRECISIONS = ("f32", "bf16")  # what an engine can be asked for; int8 is a quantised export


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
