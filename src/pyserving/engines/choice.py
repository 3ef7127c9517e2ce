"""Which engine and precision a version runs with: the fastest one whose answers are verified.

`auto` engines are every installed engine that can run the model here; `auto` precision is
f32 plus each reduced precision the engine has on this CPU. A reduced precision (bf16, or
an int8 export) is a candidate only after the version's reference set passes through it;
f32 is what the exporter verified. With more than one candidate left, each is timed on
the warm-up batch and the fastest wins.

A tensor model's reference set (`TensorReference`) verifies a reduced precision only when
that precision is asked for by name: its tolerance is on raw numbers, and `auto` does not
trade a regression's or an embedding's digits for speed.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyserving.engines import (
    ENGINES,
    Engine,
    EngineInfo,
    EngineOptions,
    engine_module,
    load_engine,
)
from pyserving.errors import ServableError
from pyserving.reference import (
    ReferenceCheck,
    ReferenceSet,
    TensorCheck,
    TensorReference,
    check_reference,
    check_tensors,
)

log = logging.getLogger(__name__)

AUTO = "auto"
TIMING_RUNS = 8
TIMING_SECONDS = 0.5


@dataclass(frozen=True)
class Wanted:
    """What the settings ask for one version."""

    engine: str = AUTO  # an engine name, or auto
    precision: str = AUTO  # f32, bf16, or auto
    tolerance: float = 0.02  # largest probability difference a reduced precision may make


@dataclass(frozen=True)
class Choice:
    """The engine a version got, the precision it reports, and how it was chosen."""

    engine: Engine
    precision: str  # f32, bf16 or int8
    reason: str


def choose_engine(
    path: Path,
    wanted: Wanted,
    options: EngineOptions,
    input_name: str,
    output_name: str,
    warm_up: Callable[[EngineInfo], Any],
    reference: ReferenceSet | TensorReference | None,
    logits: bool,
    quantized: bool,
    run: Callable[[Engine, Any], object] | None = None,
) -> Choice:
    """Load the candidates for `wanted`, verify and time them, keep the fastest.

    `warm_up` gives the batch the candidates are timed on, for an engine's view of the model;
    `run(engine, batch)` runs it (default: `engine.run`).
    Raises ServableError naming what was asked and why it cannot be had: an engine not
    installed, a precision this CPU lacks, a reference set that a precision asked for
    explicitly fails (with the numbers).
    """
    candidates = _candidates(wanted, options, quantized)
    kept: list[tuple[Engine, str]] = []
    refused: list[str] = []
    for engine_name, precision in candidates:
        try:
            engine = load_engine(
                engine_name, path, replace(options, precision=precision), input_name, output_name
            )
        except ServableError as exc:
            if wanted.engine != AUTO:
                raise
            log.warning("%s: not using %s: %s", path, engine_name, exc)
            refused.append(f"{engine_name}: {exc}")
            continue
        shown = "int8" if quantized else precision
        if shown != "f32" and isinstance(reference, TensorReference) and wanted.precision != shown:
            engine.close()
            refused.append(f"{engine_name} {shown}: only when asked for, for a tensor model")
            continue
        if shown != "f32" and reference is not None:
            check = _verify(engine, reference, logits, wanted.tolerance)
            if not check.passed:
                engine.close()
                line = f"{engine_name} {shown}: {check.describe()}"
                if wanted.precision == shown:
                    raise ServableError(f"{path}: the reference set fails with {line}")
                log.warning("%s: not using %s", path, line)
                refused.append(line)
                continue
        elif shown != "f32" and not quantized and wanted.precision != shown:
            # An unverified reduced precision runs only when asked for by name.
            engine.close()
            refused.append(f"{engine_name} {shown}: no reference set to verify it")
            continue
        kept.append((engine, shown))
    if not kept:
        raise ServableError(f"{path}: no engine can serve it here ({'; '.join(refused)})")
    if len(kept) == 1:
        engine, precision = kept[0]
        return Choice(engine, precision, _asked(wanted))
    timed = sorted(
        ((_time_per_call(e, warm_up(e.info), run), e, p) for e, p in kept), key=lambda t: t[0]
    )
    for _, engine, _ in timed[1:]:
        engine.close()
    _, best, precision = timed[0]
    reason = "fastest of " + ", ".join(f"{e.info.name} {p} {s * 1000:.2f} ms" for s, e, p in timed)
    return Choice(best, precision, reason)


def _candidates(wanted: Wanted, options: EngineOptions, quantized: bool) -> list[tuple[str, str]]:
    if wanted.engine != AUTO and wanted.engine not in ENGINES:
        raise ServableError(
            f"unknown engine {wanted.engine!r}; expected auto or one of {', '.join(ENGINES)}"
        )
    if wanted.precision not in (AUTO, "f32", "bf16"):
        raise ServableError(f"unknown precision {wanted.precision!r}; expected auto, f32 or bf16")
    if quantized and wanted.precision != AUTO:
        raise ServableError(
            f"this version is an int8 export and has no {wanted.precision} weights; "
            "serve it with precision auto"
        )
    names = [wanted.engine] if wanted.engine != AUTO else list(ENGINES)
    found: list[tuple[str, str]] = []
    why_not: list[str] = []
    for name in names:
        module = engine_module(name)
        missing = module.available()
        if missing is None and options.execution_provider != "cpu" and name != "onnxruntime":
            missing = f"{name} runs on the CPU only"
        if missing:
            if wanted.engine != AUTO:
                raise ServableError(missing)
            why_not.append(missing)
            continue
        has = module.precisions()
        if quantized:
            found.append((name, "f32"))
        elif wanted.precision == AUTO:
            found.extend((name, p) for p in has)
        elif wanted.precision in has:
            found.append((name, wanted.precision))
        else:
            why_not.append(f"{name} runs {', '.join(has)} on this machine")
    if not found:
        raise ServableError(
            f"no engine can run precision {wanted.precision} with engine {wanted.engine} here: "
            + "; ".join(why_not)
            + (" (bf16 needs a CPU with avx512_bf16 or AMX)" if wanted.precision == "bf16" else "")
        )
    return found


def _asked(wanted: Wanted) -> str:
    if wanted.engine == AUTO or wanted.precision == AUTO:
        return "the only candidate"
    return "as asked"


def _verify(
    engine: Engine, reference: ReferenceSet | TensorReference, logits: bool, tolerance: float
) -> ReferenceCheck | TensorCheck:
    try:
        if isinstance(reference, TensorReference):
            return check_tensors(reference, engine.run_named(reference.inputs), tolerance)
        return check_reference(reference, engine.run(reference.inputs), logits, tolerance)
    except Exception as exc:
        raise ServableError(
            f"engine {engine.info.name} cannot run the reference set: {exc}"
        ) from exc


def _time_per_call(
    engine: Engine, batch: Any, run: Callable[[Engine, Any], object] | None = None
) -> float:
    """Median seconds of one call on `batch`, after a warm-up call."""

    def call() -> object:
        return run(engine, batch) if run else engine.run(batch)

    call()
    times: list[float] = []
    deadline = time.perf_counter() + TIMING_SECONDS
    while len(times) < TIMING_RUNS and (not times or time.perf_counter() < deadline):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
