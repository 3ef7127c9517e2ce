"""The ONNX Runtime engine: f32 on the CPU, or CUDA with onnxruntime-gpu."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pyserving.engines import pick_tensors
from pyserving.engines.base import EngineInfo, EngineOptions, TensorInfo
from pyserving.errors import ModelNotReady, ServableError

NAME = "onnxruntime"
_TYPES = {
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(string)": "string",
}
_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeEngine:
    """An ONNX Runtime session bound to one input and one output. Sessions are thread-safe."""

    def __init__(
        self, session: ort.InferenceSession, info: EngineInfo, input_name: str, output_name: str
    ) -> None:
        self._session: ort.InferenceSession | None = session
        self.info = info
        self._input = input_name
        self._output = output_name

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output tensor for `batch`."""
        session = self._session
        if session is None:
            raise ModelNotReady("the model was unloaded")
        (out,) = session.run([self._output], {self._input: batch})
        return np.asarray(out)

    def run_named(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output for the named inputs."""
        session = self._session
        if session is None:
            raise ModelNotReady("the model was unloaded")
        outputs = session.run(None, dict(feeds))
        return {t.name: np.asarray(o) for t, o in zip(self.info.outputs, outputs, strict=True)}

    def close(self) -> None:
        """Drop the session, so its memory goes with the last reference."""
        self._session = None


def available() -> str | None:
    """ONNX Runtime is a dependency of pyserving: always available."""
    return None


def precisions() -> tuple[str, ...]:
    """ONNX Runtime runs a model in the precision it was exported in."""
    return ("f32",)


def session_options(options: EngineOptions) -> ort.SessionOptions:
    """ONNX Runtime options chosen for serving (see docs/architecture.md, "Performance")."""
    so = ort.SessionOptions()
    so.graph_optimization_level = _OPTIMIZATION_LEVELS[options.graph_optimization_level]
    # The arena keeps buffers between calls, so a steady load allocates nothing new.
    so.enable_cpu_mem_arena = options.cpu_memory_arena
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    # Spinning worker threads steal the CPU that decoding needs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def providers(execution_provider: str) -> list[str]:
    """ONNX Runtime providers for `--execution_provider`, checked against this install."""
    wanted = _PROVIDERS.get(execution_provider)
    if wanted is None:
        raise ServableError(
            f"unknown execution provider {execution_provider!r}; expected one of "
            f"{', '.join(_PROVIDERS)}"
        )
    found = ort.get_available_providers()
    if wanted[0] not in found:
        raise ServableError(
            f"execution provider {wanted[0]} is not available in this onnxruntime "
            f"(available: {', '.join(found)}); install onnxruntime-gpu for cuda"
        )
    return wanted


def load(
    path: Path, options: EngineOptions, input_name: str = "", output_name: str = ""
) -> OnnxRuntimeEngine:
    """A session for `path`. Raises ServableError when ONNX Runtime cannot load it."""
    wanted = providers(options.execution_provider)
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(options), providers=wanted
        )
    except Exception as exc:
        raise ServableError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
    inputs = tuple(_tensor(t) for t in session.get_inputs())
    outputs = tuple(_tensor(t) for t in session.get_outputs())
    chosen_in, chosen_out = pick_tensors(path, inputs, outputs, input_name, output_name)
    device = "cuda" if options.execution_provider == "cuda" else "cpu"
    info = EngineInfo(NAME, "f32", device, inputs, outputs)
    return OnnxRuntimeEngine(session, info, chosen_in.name, chosen_out.name)


def _tensor(arg: ort.NodeArg) -> TensorInfo:
    return TensorInfo(arg.name, _TYPES.get(arg.type, ""), tuple(arg.shape))
