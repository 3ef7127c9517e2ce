"""One loaded version of a model: its engine, its signature and its batcher."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from pyserving.core import metrics
from pyserving.core.batcher import Batcher
from pyserving.core.settings import BatchingSettings, ModelConfig, Settings
from pyserving.cpu import WEIGHT_BITS_HINT, int8_dot_product
from pyserving.engines.base import Engine, EngineInfo, EngineOptions, TensorInfo
from pyserving.engines.choice import Wanted, choose_engine
from pyserving.errors import ModelNotReady, ServableError
from pyserving.kinds import kind_module, load_signature
from pyserving.kinds.base import KindModule
from pyserving.signature import MODEL_FILE, Signature

log = logging.getLogger(__name__)


class Servable:
    """A model version ready to run.

    `run` is synchronous and thread-safe (engines are); it is called from the thread pool
    by the batcher. Everything else is used from the event loop.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        signature: Signature,
        engine: Engine,
        precision: str,
        batching: BatchingSettings,
        executor: Executor,
        engine_reason: str = "",
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature = signature
        self.kind: KindModule = kind_module(signature.kind)
        # One input without the batch axis, as the kind reads it from the engine's input.
        self.row_shape = self.kind.row_shape(signature, _input_of(engine.info, signature))
        self.engine: Engine | None = engine
        self.engine_info: EngineInfo = engine.info
        self.precision = precision  # f32, bf16, or int8 for a quantised export
        self.engine_reason = engine_reason  # why this engine and precision ("rule: ...")
        self.batching = batching  # this version's batching knobs
        self._inference_seconds = metrics.INFERENCE_SECONDS.labels(name)
        self._batch_size = metrics.BATCH_SIZE.labels(name)
        self.batcher = Batcher(
            self.run,
            executor,
            max_batch_size=batching.max_batch_size,
            batch_timeout_micros=batching.batch_timeout_micros,
            max_enqueued_batches=batching.max_enqueued_batches,
            num_batch_threads=batching.batch_threads,
            lone_threads=batching.lone_threads,
            on_queue_wait=metrics.QUEUE_SECONDS.labels(name).observe,
            stack=self.kind.OUTPUT.stack,
        )
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()

    def run(self, batch: Any) -> Any:
        """One answer per input of a stacked batch, as the kind's `OUTPUT.run` gives it:
        scores (N, classes) for a classifier, named output arrays for a tensor model."""
        engine = self.engine
        if engine is None:
            raise ModelNotReady(f"model {self.name!r} version {self.version} was unloaded")
        started = time.perf_counter()
        answers = self.kind.OUTPUT.run(engine, batch)
        self._inference_seconds.observe(time.perf_counter() - started)
        self._batch_size.observe(len(answers))
        return answers

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
        """Release the engine and its memory. Call after `drain`."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def warm_up_batch(self) -> Any:
        """A batch of one input the model must accept."""
        return self.kind.warm_up(self.signature, self.row_shape)


def engine_options(settings: Settings, batching: BatchingSettings | None = None) -> EngineOptions:
    """How the engines of a version run, from the settings (`batching`: the model's own)."""
    batching = batching or settings.batching
    return EngineOptions(
        threads=settings.intra_op_threads_for(batching),
        concurrency=batching.lone_threads,
        max_batch_size=batching.max_batch_size,
        graph_optimization_level=settings.graph_optimization_level,
        cpu_memory_arena=settings.cpu_memory_arena,
        execution_provider=settings.execution_provider,
        compiled_model_cache=str(settings.compiled_model_cache or ""),
    )


def load_servable(
    name: str,
    version: int,
    path: Path,
    settings: Settings,
    executor: Executor,
    config: ModelConfig | None = None,
) -> Servable:
    """Load, check and warm up the version in `path`. Slow: call it off the event loop.

    The engine and precision are the model's own in `config` where it sets them, else the
    server's. Raises ServableError naming the file and the problem.
    """
    started = time.perf_counter()
    signature = load_signature(path)
    output = kind_module(signature.kind).OUTPUT
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise ServableError(f"{model_path}: missing")
    batching = (config.batching if config else None) or settings.batching
    wanted = Wanted(
        (config.engine if config else None) or settings.engine,
        (config.precision if config else None) or settings.precision,
        settings.precision_tolerance,
    )
    options = engine_options(settings, batching)
    _check_int8_weights(signature, options, model_path)
    choice = choose_engine(
        model_path,
        wanted,
        options,
        signature.input_name,
        signature.output_name,
        partial(_warm_up_batch, signature),
        output.load_reference(path),
        signature.scores == "logits",
        signature.precision == "int8",
        output.run,
    )
    try:
        _check_engine(choice.engine.info, signature, model_path)
        servable = Servable(
            name,
            version,
            path,
            signature,
            choice.engine,
            choice.precision,
            batching,
            executor,
            choice.reason,
        )
        _warm_up(servable, model_path)
    except BaseException:
        choice.engine.close()
        raise
    log.info(
        "model %s version %d runs on engine %s %s (%s)",
        name,
        version,
        choice.engine.info.name,
        choice.precision,
        choice.reason,
    )
    log.debug("loaded %s version %d in %.2f s", name, version, time.perf_counter() - started)
    return servable


def _check_int8_weights(sig: Signature, options: EngineOptions, model_path: Path) -> None:
    """Refuse 8-bit int8 weights on a CPU whose int8 kernels would saturate them.

    The reference set could pass by luck on a few images while most answers are wrong, so
    this is decided from the export's record (exports that record no bits have 7) and the CPU.
    """
    quantization = sig.source.get("quantization")
    bits = quantization.get("weight_bits", 7) if isinstance(quantization, dict) else 7
    if sig.precision != "int8" or bits != 8 or options.execution_provider != "cpu":
        return
    if int8_dot_product() is None:
        raise ServableError(
            f"{model_path}: {WEIGHT_BITS_HINT}, which this CPU lacks, so its int8 kernels "
            "would saturate; re-export on this CPU or with --int8_weights 7"
        )


def _check_engine(info: EngineInfo, sig: Signature, model_path: Path) -> None:
    inputs = {t.name: t for t in info.inputs}
    actual_type = inputs[sig.input_name].dtype
    if actual_type and actual_type != sig.input_dtype:
        raise ServableError(
            f"{model_path}: input {sig.input_name!r} is {actual_type}, "
            f"but servable.json says {sig.input_dtype}"
        )


def _warm_up_batch(sig: Signature, info: EngineInfo) -> Any:
    kind = kind_module(sig.kind)
    return kind.warm_up(sig, kind.row_shape(sig, _input_of(info, sig)))


def _input_of(info: EngineInfo, sig: Signature) -> TensorInfo:
    return next(t for t in info.inputs if t.name == sig.input_name)


def _warm_up(servable: Servable, model_path: Path) -> None:
    """Run the warm-up input; the kind checks the engine's outputs and the answer."""
    batch = servable.warm_up_batch()
    try:
        (answer,) = servable.run(batch)
        if isinstance(answer, BaseException):
            raise answer
    except Exception as exc:
        raise ServableError(f"{model_path}: warm-up inference failed: {exc}") from exc
    problem = servable.kind.OUTPUT.check(servable.signature, servable.engine_info, answer)
    if problem:
        raise ServableError(f"{model_path}: {problem}")
