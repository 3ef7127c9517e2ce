"""Server settings: parsed once in `cli.py`, passed down, never read from globals."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pyserving.cores import usable_cores
from pyserving.units import MiB

ENGINE_CHOICES = ("auto", "onnxruntime", "openvino")  # auto: by rule (engines/choice.py)
PRECISION_CHOICES = ("auto", "f32", "bf16")  # auto: a reduced one only once verified


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve, as in TensorFlow Serving."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1  # for `latest`
    versions: tuple[int, ...] = ()  # for `specific`


@dataclass(frozen=True)
class BatchingSettings:
    """The batcher's knobs, with TensorFlow Serving's names."""

    # 4, not 8: on a CPU a batch of 4 costs the least per input, and shorter batches
    # keep the tail latency down (docs/performance.md has the measurements).
    max_batch_size: int = 4
    batch_timeout_micros: int = 0  # 0: run whatever is queued, never wait for more
    max_enqueued_batches: int = 32  # 128 inputs queued at most, with max_batch_size 4
    num_batch_threads: int = 0  # 0: one per core

    @property
    def batch_threads(self) -> int:
        """Batches of one version that may run at once."""
        return self.num_batch_threads or usable_cores()

    @property
    def lone_threads(self) -> int:
        """Calls of one version that may run at once: lone inputs (nothing queued) or
        batches; never fewer than `batch_threads`.

        Left to the default, two per core: a lone input is decoded and run in one trip to
        the pool, and with only one per core the cores wait during each trip's hops (at
        four requests in flight on two cores, 1.78 cores busy against 1.96). A number
        given by --num_batch_threads is kept to exactly.
        """
        return self.num_batch_threads or 2 * usable_cores()


@dataclass(frozen=True)
class ModelConfig:
    """One model the server serves: its name, folder of versions, policy and batching."""

    name: str
    base_path: Path
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    batching: BatchingSettings | None = None  # None: the server's
    engine: str | None = None  # None: the server's
    precision: str | None = None  # None: the server's
    # TF Serving's version_labels: (label, version) pairs, sorted by label
    version_labels: tuple[tuple[str, int], ...] = ()
    # An s3:// URI the versions are copied from into base_path (core/mirror.py); empty:
    # base_path is the repository itself.
    source: str = ""


@dataclass(frozen=True)
class Settings:
    """Everything `pyserving serve` can be told. Flag names follow TensorFlow Serving."""

    models: tuple[ModelConfig, ...]
    default_model: str = ""  # empty: the first model
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0.0  # 0: read once
    file_system_poll_wait_seconds: float = 2.0  # 0: scan once
    # A new version label may name a version not (yet) available, as in TF Serving.
    allow_version_labels_for_unavailable_models: bool = False
    host: str = "0.0.0.0"
    port: int = 9999
    rest_api_port: int = 8501  # 0: no REST port
    max_request_bytes: int = 20 * MiB
    # What one client can make the server hold (see docs/deploy.md for why these values).
    max_header_bytes: int = 16 * 1024  # REST headers, gRPC metadata
    max_headers: int = 100  # REST headers in one request
    max_connections: int = 1000  # per port
    max_concurrent_streams: int = 100  # gRPC calls at once on one connection
    idle_timeout_seconds: float = 120.0  # an idle connection is closed after this
    max_image_pixels: int = 50_000_000
    max_text_chars: int = 100_000  # characters in one text, after normalising whitespace
    max_audio_seconds: float = 60.0  # longest audio clip, read from its header
    max_explain_inputs: int = 128  # inputs one explanation may run, the original included
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    worker_threads: int = 0  # 0: sized to the machine
    intra_op_threads: int = 0  # 0: the cores shared among a version's batch threads
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    cpu_memory_arena: bool = True  # reuse ONNX Runtime's buffers between calls
    execution_provider: str = "cpu"  # "cpu" or "cuda"
    # OpenVINO keeps compiled models here (None: off); the default is read when settings are made.
    compiled_model_cache: Path | None = field(
        default_factory=lambda: default_compiled_model_cache()
    )
    # Remote (s3://) models' versions are copied here before they load (core/mirror.py).
    model_cache_dir: Path = field(default_factory=lambda: default_model_cache())
    s3_endpoint: str = ""  # empty: $AWS_ENDPOINT_URL, $S3_ENDPOINT or AWS itself
    engine: str = "auto"  # "onnxruntime", "openvino", or "auto": by rule (engines/choice.py)
    precision: str = "auto"  # "f32", "bf16", or "auto": reduced only once verified
    precision_tolerance: float = 0.02  # largest probability change a reduced precision may make
    worker_niceness: int = 10  # added to the nice value of decode/inference threads
    # On SIGTERM: health turns NOT_SERVING, requests are still served this long (so load
    # balancers and clients watching health move away), then new requests are refused with
    # UNAVAILABLE / 503 while those in flight finish, for at most shutdown_grace_seconds.
    drain_seconds: float = 5.0
    shutdown_grace_seconds: float = 20.0
    auth_token_file: Path | None = None  # set: calls need `authorization: Bearer <token>`
    auth_metrics: bool = False  # with auth_token_file: /metrics needs a token too
    metrics_path: str | None = None  # Prometheus metrics here too (--monitoring_config_file)
    ssl_cert: Path | None = None  # PEM; with ssl_key, both ports speak TLS
    ssl_key: Path | None = None
    ssl_client_ca: Path | None = None  # PEM; set: clients must present a cert it signed

    @property
    def pool_size(self) -> int:
        """Threads for decoding and inference: enough to keep every core busy while some wait."""
        return self.worker_threads or 2 * usable_cores() + 2

    def intra_op_threads_for(self, batching: BatchingSettings) -> int:
        """ONNX Runtime threads per inference call, so that concurrent batches fill the cores."""
        return self.intra_op_threads or max(1, usable_cores() // batching.batch_threads)


def default_compiled_model_cache() -> Path:
    """Where compiled models are kept unless told otherwise: under $XDG_CACHE_HOME or ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pyserving" / "openvino"


def default_model_cache() -> Path:
    """Where remote models' versions are copied unless told otherwise: under the XDG cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pyserving" / "models"
