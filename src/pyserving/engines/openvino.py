"""The OpenVINO engine: reads `model.onnx` as exported; f32, or bf16 where the CPU has it."""

from __future__ import annotations

import contextlib
import functools
import queue
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pyserving.engines import EngineInfo, EngineOptions, TensorInfo, pick_tensors
from pyserving.errors import MissingExtra, ModelNotReady, ServableError

NAME = "openvino"
INSTALL = str(MissingExtra("openvino", "openvino"))
_HINTS = {"f32": "f32", "bf16": "bf16"}
_CAPABILITIES = {"f32": "FP32", "bf16": "BF16"}


class OpenVinoEngine:
    """A compiled model with a pool of infer requests, one per concurrent call."""

    def __init__(self, compiled: Any, info: EngineInfo, input_name: str, output_name: str) -> None:
        self._compiled: Any = compiled
        self.info = info
        self._input = input_name
        self._output = compiled.output(output_name)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output tensor for `batch` (OpenVINO releases the GIL while it runs)."""
        with self._request() as (request, _):
            results = request.infer({self._input: batch})
            return np.asarray(results[self._output])

    def run_named(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output for the named inputs (copies: the request is reused)."""
        with self._request() as (request, compiled):
            results = request.infer(dict(feeds))
            return {
                t.name: np.array(results[p])
                for t, p in zip(self.info.outputs, compiled.outputs, strict=True)
            }

    @contextlib.contextmanager
    def _request(self) -> Iterator[tuple[Any, Any]]:
        """An idle infer request (a new one when all are busy) and the compiled model; the
        request goes back to the pool afterwards."""
        compiled = self._compiled
        if compiled is None:
            raise ModelNotReady("the model was unloaded")
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            yield request, compiled
        finally:
            self._requests.put(request)

    def close(self) -> None:
        """Drop the compiled model and its requests, so their memory goes."""
        self._compiled = None
        while not self._requests.empty():
            self._requests.get_nowait()


@functools.cache
def _core() -> Any:
    # `import openvino` sends a usage event to Google Analytics through openvino_telemetry
    # (opt-out; off only where CI=true). Where that package cannot be imported, OpenVINO
    # falls back to its own no-op stub, so nothing leaves the machine.
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino.Core()


def available() -> str | None:
    """None when openvino imports, else the line that says how to install it."""
    try:
        _core()
    except ImportError:
        return INSTALL
    return None


def precisions() -> tuple[str, ...]:
    """f32, and bf16 when this CPU computes it natively (avx512_bf16 or AMX)."""
    capabilities = set(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return tuple(p for p, c in _CAPABILITIES.items() if c in capabilities)


def load(
    path: Path, options: EngineOptions, input_name: str = "", output_name: str = ""
) -> OpenVinoEngine:
    """Compile `path` for the CPU. Raises ServableError when OpenVINO cannot."""
    if options.execution_provider != "cpu":
        raise ServableError(
            f"engine openvino runs on the CPU here; --execution_provider "
            f"{options.execution_provider} needs --engine onnxruntime"
        )
    config = {
        # Asked explicitly: left alone, OpenVINO picks bf16 by itself on CPUs that have it.
        "INFERENCE_PRECISION_HINT": _HINTS[options.precision],
        # A stream per concurrent call, each with the threads a call gets.
        "NUM_STREAMS": max(1, options.concurrency),
        "INFERENCE_NUM_THREADS": max(1, options.threads) * max(1, options.concurrency),
    }
    try:
        compiled = _core().compile_model(str(path), "CPU", config)
    except Exception as exc:
        reason = str(exc).strip().splitlines()
        raise ServableError(
            f"{path}: OpenVINO cannot compile it: {reason[0] if reason else type(exc).__name__}"
        ) from exc
    inputs = tuple(_tensor(port) for port in compiled.inputs)
    outputs = tuple(_tensor(port) for port in compiled.outputs)
    chosen_in, chosen_out = pick_tensors(path, inputs, outputs, input_name, output_name)
    info = EngineInfo(NAME, options.precision, "cpu", inputs, outputs)
    return OpenVinoEngine(compiled, info, chosen_in.name, chosen_out.name)


def _tensor(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    try:
        dtype = np.dtype(port.get_element_type().to_dtype()).name
    except Exception:
        dtype = ""
    if dtype in ("bytes", "str"):
        dtype = "string"  # as ONNX and ONNX Runtime name it
    return TensorInfo(port.get_any_name(), dtype, shape)
