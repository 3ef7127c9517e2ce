"""Server settings: parsed once in `cli.py`, passed down, never read from globals."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024


@dataclass(frozen=True)
class ModelConfig:
    """One model the server serves: its name and the folder holding its versions."""

    name: str
    base_path: Path


@dataclass(frozen=True)
class Settings:
    """Everything `pyserving serve` can be told. Flag names follow TensorFlow Serving."""

    models: tuple[ModelConfig, ...]
    host: str = "0.0.0.0"
    port: int = 9999
    max_request_bytes: int = 20 * MiB
    max_image_pixels: int = 50_000_000
    max_batch_size: int = 8
    max_enqueued_batches: int = 16
    num_batch_threads: int = 1
    worker_threads: int = 0  # 0: sized to the machine
    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per core)
    execution_provider: str = "cpu"  # "cpu" or "cuda"
    shutdown_grace_seconds: float = 20.0

    @property
    def default_model(self) -> str:
        return self.models[0].name

    @property
    def pool_size(self) -> int:
        """Threads for decoding and inference: enough to keep every core busy while some wait."""
        return self.worker_threads or (os.cpu_count() or 1) + 2
