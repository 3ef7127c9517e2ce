"""A test engine at the engine seam: ONNX Runtime whose bf16 rounds outputs to bfloat16.

This CPU may lack bf16, so the engine choice's handling of a reduced precision (verify,
refuse, fall back) is exercised with this stand-in; tests/test_engines.py also runs the
real OpenVINO bf16 wherever the CPU has it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pyserving.engines import EngineOptions
from pyserving.engines import onnxruntime as ort_engine


class RoundingEngine:
    """Runs ONNX Runtime; at bf16, keeps only bfloat16's 8 bits of mantissa in the output."""

    def __init__(self, inner: ort_engine.OnnxRuntimeEngine, precision: str) -> None:
        self._inner = inner
        self.info = replace(inner.info, name="emulated", precision=precision)

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self._inner.run(batch).astype(np.float32)
        if self.info.precision == "bf16":
            out = (out.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
        return out

    def close(self) -> None:
        self._inner.close()


def available() -> str | None:
    return None


def precisions() -> tuple[str, ...]:
    return ("f32", "bf16")


def load(
    path: Path, options: EngineOptions, input_name: str = "", output_name: str = ""
) -> RoundingEngine:
    inner = ort_engine.load(path, replace(options, precision="f32"), input_name, output_name)
    return RoundingEngine(inner, options.precision)
