"""One loaded version of a model: an ONNX Runtime session, its signature and its batcher."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pyserving import metrics
from pyserving.batcher import Batcher
from pyserving.errors import ModelNotReady, ServableError
from pyserving.settings import BatchingSettings, Settings
from pyserving.signature import MODEL_FILE, Signature, load_signature

log = logging.getLogger(__name__)

_ORT_TYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}
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


class Servable:
    """A model version ready to run.

    `run` is synchronous and thread-safe (ONNX Runtime sessions are); it is called from
    the thread pool by the batcher. Everything else is used from the event loop.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        signature: Signature,
        session: ort.InferenceSession,
        batching: BatchingSettings,
        executor: Executor,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature = signature
        self.session: ort.InferenceSession | None = session
        self._inference_seconds = metrics.INFERENCE_SECONDS.labels(name)
        self._batch_size = metrics.BATCH_SIZE.labels(name)
        self.batcher = Batcher(
            self.run,
            executor,
            max_batch_size=batching.max_batch_size,
            batch_timeout_micros=batching.batch_timeout_micros,
            max_enqueued_batches=batching.max_enqueued_batches,
            num_batch_threads=batching.batch_threads,
            on_queue_wait=metrics.QUEUE_SECONDS.labels(name).observe,
        )
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Scores for a batch of preprocessed inputs, shape (N, classes)."""
        session = self.session
        if session is None:
            raise ModelNotReady(f"model {self.name!r} version {self.version} was unloaded")
        started = time.perf_counter()
        (scores,) = session.run([self.signature.output_name], {self.signature.input_name: batch})
        self._inference_seconds.observe(time.perf_counter() - started)
        self._batch_size.observe(len(batch))
        return np.asarray(scores).reshape(len(batch), -1)

    @contextmanager
    def in_use(self) -> Iterator[Servable]:
        """Count a request as in flight until the block ends (event loop only)."""
        self._in_flight += 1
        self._drained.clear()
        try:
            yield self
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._drained.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self) -> None:
        """Wait until no request holds this servable."""
        await self._drained.wait()
        await self.batcher.wait_idle()

    def close(self) -> None:
        """Release the ONNX Runtime session and its memory. Call after `drain`."""
        self.session = None

    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch axis."""
        sig = self.signature
        if sig.kind == "image":
            return (sig.height, sig.width, 3)
        return (len(sig.features),)


def session_options(
    settings: Settings, batching: BatchingSettings | None = None
) -> ort.SessionOptions:
    """ONNX Runtime options chosen for serving (see DESIGN.md, "Performance model").

    `batching` is the model's own, where it has one; else the server's.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[settings.graph_optimization_level]
    # The arena keeps buffers between calls, so a steady load allocates nothing new.
    options.enable_cpu_mem_arena = settings.cpu_memory_arena
    # One thread per call and a call per core spends less CPU per image under load than
    # every call using every core; a single batch thread gets all cores instead.
    options.intra_op_num_threads = settings.intra_op_threads_for(batching or settings.batching)
    options.inter_op_num_threads = 1
    # Spinning worker threads steal the CPU that decoding needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers(execution_provider: str) -> list[str]:
    """ONNX Runtime providers for `--execution_provider`, checked against this install."""
    wanted = _PROVIDERS.get(execution_provider)
    if wanted is None:
        raise ServableError(
            f"unknown execution provider {execution_provider!r}; expected one of "
            f"{', '.join(_PROVIDERS)}"
        )
    available = ort.get_available_providers()
    if wanted[0] not in available:
        raise ServableError(
            f"execution provider {wanted[0]} is not available in this onnxruntime "
            f"(available: {', '.join(available)}); install onnxruntime-gpu for cuda"
        )
    return wanted


def load_servable(
    name: str,
    version: int,
    path: Path,
    settings: Settings,
    executor: Executor,
    batching: BatchingSettings | None = None,
) -> Servable:
    """Load, check and warm up the version in `path`. Slow: call it off the event loop.

    Raises ServableError naming the file and the problem.
    """
    started = time.perf_counter()
    signature = load_signature(path)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise ServableError(f"{model_path}: missing")
    try:
        session = ort.InferenceSession(
            str(model_path),
            sess_options=session_options(settings, batching),
            providers=providers(settings.execution_provider),
        )
    except ServableError:
        raise
    except Exception as exc:
        raise ServableError(f"{model_path}: ONNX Runtime cannot load it: {exc}") from exc
    _check_session(session, signature, model_path)
    servable = Servable(
        name, version, path, signature, session, batching or settings.batching, executor
    )
    _warm_up(servable, model_path)
    log.debug("loaded %s version %d in %.2f s", name, version, time.perf_counter() - started)
    return servable


def _check_session(session: ort.InferenceSession, sig: Signature, model_path: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if sig.input_name not in inputs:
        raise ServableError(
            f"{model_path}: has no input {sig.input_name!r} (servable.json); "
            f"its inputs are {sorted(inputs)}"
        )
    if sig.output_name not in outputs:
        raise ServableError(
            f"{model_path}: has no output {sig.output_name!r} (servable.json); "
            f"its outputs are {sorted(outputs)}"
        )
    expected_type = _ORT_TYPES.get(sig.input_dtype)
    actual_type = inputs[sig.input_name].type
    if expected_type and actual_type != expected_type:
        raise ServableError(
            f"{model_path}: input {sig.input_name!r} is {actual_type}, "
            f"but servable.json says {sig.input_dtype}"
        )
    width = outputs[sig.output_name].shape[-1]
    if isinstance(width, int) and width != sig.num_classes:
        raise ServableError(
            f"{model_path}: output {sig.output_name!r} has {width} classes but labels.txt "
            f"has {sig.num_classes} labels"
        )


def _warm_up(servable: Servable, model_path: Path) -> None:
    dtype = np.uint8 if servable.signature.input_dtype == "uint8" else np.float32
    batch = np.zeros((1, *servable.input_shape()), dtype=dtype)
    try:
        scores = servable.run(batch)
    except Exception as exc:
        raise ServableError(f"{model_path}: warm-up inference failed: {exc}") from exc
    if scores.shape != (1, servable.signature.num_classes):
        raise ServableError(
            f"{model_path}: output has shape {scores.shape} for one input; expected "
            f"(1, {servable.signature.num_classes}) to match labels.txt"
        )
