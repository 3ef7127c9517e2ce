"""The OpenVINO engine: reads `model.onnx` as exported; f32, or bf16 where the CPU has it.

A version gets several compiled models of its `model.onnx` where more than one call may
run at once (docs/engines.md has the measurements):
- for throughput, a stream per concurrent call, with the batch axis fixed at each of
  `STATIC_BATCHES` (a larger batch runs as pieces of those sizes, one after another): a
  fixed shape costs about 5% less per input than a free one, and a batch of 4 costs the
  least per input on the CPUs measured. The model with a free batch axis is kept for what
  fits none of them (named inputs, models whose other axes are free or that are large);
- for latency, one stream over all the cores with the batch fixed at 1. A batch of one
  input runs on it when no other call is running and none has overlapped another for
  `QUIET_SECONDS`, so a lone request is not paying for throughput mode, and steady
  concurrency stays on the streams.
Compiled models are kept in `compiled_model_cache` (see `compiled_cache`), where OpenVINO
finds them on the next load; it ignores and rewrites a blob it cannot read.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pyserving.cores import usable_cores
from pyserving.engines import pick_tensors
from pyserving.engines.base import EngineInfo, EngineOptions, TensorInfo
from pyserving.engines.compiled_cache import model_cache
from pyserving.errors import MissingExtra, ModelNotReady, ServableError
from pyserving.units import MiB

log = logging.getLogger(__name__)

NAME = "openvino"
INSTALL = str(MissingExtra("openvino", "openvino"))
_HINTS = {"f32": "f32", "bf16": "bf16"}
_CAPABILITIES = {"f32": "FP32", "bf16": "BF16"}
QUIET_SECONDS = 0.5  # no calls overlapping this long: a lone input may take every core
STATIC_BATCHES = (4, 2, 1)  # batch sizes compiled with a fixed shape, largest first
# Each fixed-shape model is a compiled copy of its own: only for models up to this size.
STATIC_MAX_BYTES = 64 * MiB


class _Compiled:
    """One compiled model and its pool of infer requests, one per concurrent call.

    The requests are made at load, so serving allocates none. The first inference of the
    process (the version's warm-up, one thread alone) also sets up the binding's numpy
    access: OpenVINO 2026.4 deadlocks when two threads race to do that (seen in the plain
    FastAPI app of `bench/` before it warmed up).
    """

    def __init__(self, compiled: Any, output_name: str, calls: int) -> None:
        self.compiled: Any = compiled
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self.streams = int(compiled.get_property("NUM_STREAMS"))
        self.output: Any = compiled.output(output_name)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(max(1, calls)):
            self._requests.put(compiled.create_infer_request())

    @contextlib.contextmanager
    def request(self) -> Iterator[Any]:
        """An idle infer request (a new one when all are busy, which the engine's own
        bound on concurrent calls prevents), back in the pool afterwards."""
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            yield request
        finally:
            self._requests.put(request)


class OpenVinoEngine:
    """A compiled model for throughput and, optionally, one for a lone input's latency.

    `run` and `run_named` are thread-safe and called from worker threads.
    """

    def __init__(
        self,
        throughput: _Compiled,
        latency: _Compiled | None,
        info: EngineInfo,
        input_name: str,
        fixed: Mapping[int, _Compiled] | None = None,
    ) -> None:
        self._throughput: _Compiled | None = throughput
        self._latency = latency
        self._fixed = dict(fixed or {})  # batch size → its fixed-shape model
        self.info = info
        self._input = input_name
        self._lock = threading.Lock()
        self._running = 0  # calls in progress
        self._overlapped = -QUIET_SECONDS  # time.monotonic() when calls last overlapped

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output tensor for `batch` (OpenVINO releases the GIL while it runs)."""
        with self._call(len(batch)) as model:
            fixed = self._fixed
            if model is self._latency or not fixed:
                return self._infer(model, batch)
            pieces, start = [], 0
            for size in pieces_of(len(batch), fixed):
                pieces.append(self._infer(fixed[size], batch[start : start + size]))
                start += size
            return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _infer(self, model: _Compiled, batch: np.ndarray) -> np.ndarray:
        with model.request() as request:
            results = request.infer({self._input: batch})
            return np.asarray(results[model.output])

    def run_named(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output for the named inputs (copies: the request is reused)."""
        with self._call(0) as model, model.request() as request:
            results = request.infer(dict(feeds))
            return {
                t.name: np.array(results[p])
                for t, p in zip(self.info.outputs, model.compiled.outputs, strict=True)
            }

    @contextlib.contextmanager
    def _call(self, rows: int) -> Iterator[_Compiled]:
        """The compiled model for a call of `rows` inputs (0: named inputs), counted as
        running until the block ends."""
        throughput, latency = self._throughput, self._latency
        if throughput is None:
            raise ModelNotReady("the model was unloaded")
        with self._lock:
            now = time.monotonic()
            if self._running:
                self._overlapped = now
            # Lone only after a quiet spell: under steady concurrency a call that happens to
            # find the other one finished would take the cores that the next call needs.
            alone = not self._running and now - self._overlapped > QUIET_SECONDS
            self._running += 1
        try:
            yield latency if latency is not None and alone and rows == 1 else throughput
        finally:
            with self._lock:
                self._running -= 1

    def close(self) -> None:
        """Drop the compiled models and their requests, so their memory goes."""
        self._throughput = self._latency = None
        self._fixed = {}


def pieces_of(rows: int, sizes: Mapping[int, Any]) -> list[int]:
    """`rows` as a sum of `sizes` (which include 1), largest first: 7 → [4, 2, 1]."""
    pieces = []
    for size in sorted(sizes, reverse=True):
        count, rows = divmod(rows, size)
        pieces += [size] * count
    return pieces


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
    streams = max(1, options.concurrency)
    threads = max(1, options.threads) * streams
    precision = {
        # Asked explicitly: left alone, OpenVINO picks bf16 by itself on CPUs that have it.
        "INFERENCE_PRECISION_HINT": _HINTS[options.precision],
        "INFERENCE_NUM_THREADS": threads,
        # Unpinned: each compiled model (one per fixed batch size, and the latency model)
        # pins its own streams, so two calls on two models could share one core while
        # another waits idle.
        "ENABLE_CPU_PINNING": False,
    }
    cache = model_cache(options.compiled_model_cache, path)
    # A stream per concurrent call, each with the threads a call gets.
    compiled = _compile(path, str(path), {**precision, "NUM_STREAMS": streams}, cache)
    inputs = tuple(_tensor(port) for port in compiled.inputs)
    outputs = tuple(_tensor(port) for port in compiled.outputs)
    chosen_in, chosen_out = pick_tensors(path, inputs, outputs, input_name, output_name)
    info = EngineInfo(NAME, options.precision, "cpu", inputs, outputs)
    latency: _Compiled | None = None
    fixed: dict[int, _Compiled] = {}
    batch_axis_only = len(inputs) == 1 and _free_axes(chosen_in) == [0]
    # Read once for every fixed-batch model; each reshapes a copy.
    source = functools.cache(lambda: _core().read_model(str(path)))
    if batch_axis_only and streams > 1:
        # One stream over the cores, never more threads than there are cores.
        lone = {**precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        lone["INFERENCE_NUM_THREADS"] = min(threads, usable_cores())
        # One call at a time runs alone (OpenVinoEngine._call).
        latency = _fixed_batch(
            path, source, chosen_in, chosen_out, 1, lone, cache, 1, "latency model"
        )
    if batch_axis_only and path.stat().st_size <= STATIC_MAX_BYTES:
        largest = options.max_batch_size or max(STATIC_BATCHES)
        for size in (s for s in STATIC_BATCHES if s <= largest):
            config = {**precision, "NUM_STREAMS": streams}
            model = _fixed_batch(
                path, source, chosen_in, chosen_out, size, config, cache, streams, "fixed batch"
            )
            if model is None:
                fixed = {}
                break
            fixed[size] = model
    throughput = _Compiled(compiled, chosen_out.name, streams)
    log.info(
        "%s: openvino %s, throughput: %d streams x %d thread(s) for %d calls at once, %s; %s; "
        "compiled-model cache: %s",
        path,
        options.precision,
        throughput.streams,
        max(1, throughput.threads // throughput.streams),
        streams,
        f"batches of {', '.join(map(str, fixed))} fixed (larger ones in pieces)"
        if fixed
        else "any batch (a free batch axis)",
        f"latency: 1 stream x {latency.threads} threads, batch 1, for a lone input"
        if latency
        else "no latency model (one call at a time, or not a single input with a free batch axis)",
        cache or "off",
    )
    return OpenVinoEngine(throughput, latency, info, chosen_in.name, fixed)


def _fixed_batch(
    path: Path,
    source: Callable[[], Any],
    tensor_in: TensorInfo,
    tensor_out: TensorInfo,
    size: int,
    config: dict[str, Any],
    cache: str | None,
    calls: int,
    what: str,
) -> _Compiled | None:
    """A copy of the model `source` reads, its batch axis fixed at `size`; None (and why, in
    the log) when OpenVINO cannot make it: then the model with a free batch axis runs."""
    try:
        model = source().clone()
        model.reshape({model.inputs[0]: [size, *tensor_in.shape[1:]]})
        return _Compiled(_compile(path, model, config, cache), tensor_out.name, calls)
    except Exception as exc:
        log.warning("%s: no %s of batch %d: %s", path, what, size, _first_line(exc))
        return None


def _compile(path: Path, model: Any, config: dict[str, Any], cache: str | None) -> Any:
    """`model` (a path or an ov.Model) compiled; without the cache if loading fails with it."""
    if cache:
        try:
            return _core().compile_model(model, "CPU", {**config, "CACHE_DIR": cache})
        except Exception as exc:
            compiled = _compile(path, model, config, None)  # the model's own error, if any
            log.warning(
                "%s: compiled-model cache %s failed (%s); loaded without it",
                path,
                cache,
                _first_line(exc),
            )
            return compiled
    try:
        return _core().compile_model(model, "CPU", config)
    except Exception as exc:
        raise ServableError(f"{path}: OpenVINO cannot compile it: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    """OpenVINO's reason in words, on one line.

    Its messages start with the C++ files the error passed through ("Exception from
    src/inference/src/cpp/core.cpp:132:"), then "Check ... failed at ..." lines; a failed
    ONNX conversion ends with a summary naming the operations it cannot convert.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "Summary:" in lines:
        summary = lines[lines.index("Summary:") + 1 :]
        return "; ".join(line.removeprefix("-- ") for line in summary)
    words = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return (words or lines or [type(exc).__name__])[-1]


def _free_axes(tensor: TensorInfo) -> list[int]:
    return [i for i, d in enumerate(tensor.shape) if not isinstance(d, int)]


def _tensor(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    try:
        dtype = np.dtype(port.get_element_type().to_dtype()).name
    except Exception:
        dtype = ""
    if dtype in ("bytes", "str"):
        dtype = "string"  # as ONNX and ONNX Runtime name it
    return TensorInfo(port.get_any_name(), dtype, shape)
