"""Which engine and precision a version runs with, by a fixed rule: the same every start.

`auto` tries the candidates in one order and serves the first that loads, runs the warm-up
input and, for a reduced precision, passes the version's reference set. The order depends
only on the size of `model.onnx` (measurements in docs/engines.md):

- 1 MiB or more (an image or audio network): a reduced precision first (bf16 on OpenVINO
  where the CPU computes it natively; an int8 export on OpenVINO), about twice as fast as
  f32; then OpenVINO f32, whose latency model runs a lone input on every core; then ONNX
  Runtime f32, the engine the exporter verified the export on (and the one that compiles
  every graph).
- smaller (a scikit-learn or other tabular model): ONNX Runtime first, whose call costs a
  few microseconds where OpenVINO's costs about 0.1 ms, more than such a model computes.

Nothing is timed, so a busy machine gets the same choice as an idle one.

A tensor model's reference set (`TensorReference`) verifies a reduced precision only when
that precision is asked for by name: its tolerance is on raw numbers, and `auto` does not
trade a regression's or an embedding's digits for speed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pyserving.engines import ENGINES, engine_module, load_engine
from pyserving.engines.base import Engine, EngineInfo, EngineOptions
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
REFERENCE_ENGINE = "onnxruntime"  # what the exporter verifies an export on
LARGE_MODEL_BYTES = 1 << 20  # from here on, a reduced precision is tried first


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
    """The first candidate for `wanted`, in the rule's order, that loads, runs and verifies.

    `warm_up` gives the batch each candidate must run, for an engine's view of the model;
    `run(engine, batch)` runs it (default: `engine.run`).
    Raises ServableError naming what was asked and why it cannot be had: an engine not
    installed, a precision this CPU lacks, a reference set that a precision asked for
    explicitly fails (with the numbers).
    """
    candidates = _in_rule_order(_candidates(wanted, options, quantized), path, quantized)
    refused: list[str] = []
    failed: set[str] = set()  # engines that cannot load the model at any precision
    for engine_name, precision in candidates:
        shown = "int8" if quantized else precision
        if engine_name in failed:
            continue
        try:
            engine = load_engine(
                engine_name, path, replace(options, precision=precision), input_name, output_name
            )
        except ServableError as exc:
            if wanted.engine != AUTO:
                raise
            # Expected under auto (OpenVINO compiles no scikit-learn graph): a note, in words.
            log.info("%s: not using %s: %s", path, engine_name, str(exc).removeprefix(f"{path}: "))
            refused.append(f"{engine_name}: {exc}")
            failed.add(engine_name)
            continue
        try:
            problem = _problem(engine, shown, wanted, warm_up, reference, logits, quantized, run)
        except ServableError as exc:
            engine.close()
            raise ServableError(f"{path}: {exc}") from exc
        if problem is None:
            return Choice(engine, shown, _reason(wanted, candidates, path, quantized, refused))
        engine.close()
        line = f"{engine_name} {shown}: {problem}"
        log.warning("%s: not using %s", path, line)
        refused.append(line)
    raise ServableError(f"{path}: no engine can serve it here ({'; '.join(refused)})")


def _problem(
    engine: Engine,
    shown: str,
    wanted: Wanted,
    warm_up: Callable[[EngineInfo], Any],
    reference: ReferenceSet | TensorReference | None,
    logits: bool,
    quantized: bool,
    run: Callable[[Engine, Any], object] | None,
) -> str | None:
    """Why `engine` at `shown` precision may not serve the version; None when it may.

    Raises ServableError when the reference set fails a precision asked for by name.
    """
    if shown != "f32" and isinstance(reference, TensorReference) and wanted.precision != shown:
        return "only when asked for, for a tensor model"
    if shown != "f32" and reference is not None:
        try:
            check = _verify(engine, reference, logits, wanted.tolerance)
        except ServableError as exc:
            if wanted.precision == shown:
                raise
            return str(exc)
        if not check.passed and wanted.precision == shown:
            raise ServableError(
                f"the reference set fails with {engine.info.name} {shown}: {check.describe()}"
            )
        if not check.passed:
            return check.describe()
    elif shown != "f32" and not quantized and wanted.precision != shown:
        # An unverified reduced precision runs only when asked for by name.
        return "no reference set to verify it"
    if wanted.engine != AUTO and wanted.precision != AUTO:
        return None  # nothing to choose: the servable's own warm-up says what fails
    try:
        batch = warm_up(engine.info)
        answers = run(engine, batch) if run else engine.run(batch)
        # A kind's run hands back, in place of an answer, the error of an input that failed.
        for answer in answers if isinstance(answers, list) else ():
            if isinstance(answer, Exception):
                raise answer
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return f"cannot run the warm-up input: {lines[0] if lines else type(exc).__name__}"
    return None


def _reason(
    wanted: Wanted,
    candidates: list[tuple[str, str]],
    path: Path,
    quantized: bool,
    refused: list[str],
) -> str:
    """Why the first candidate left was chosen, for the log line and the status."""
    if wanted.engine != AUTO and wanted.precision != AUTO:
        return "as asked"
    if len(candidates) == 1 and not refused:
        return "the only candidate"
    size = path.stat().st_size
    order = ", ".join(f"{e} {'int8' if quantized else p}" for e, p in candidates)
    reason = (
        f"rule: model.onnx is {size / (1 << 20):.1f} MiB, "
        + ("at least 1 MiB: a reduced precision first" if _large(path) else "under 1 MiB")
        + f"; the first of {order} that runs here and passes the reference set"
    )
    return reason + (f"; not {'; not '.join(refused)}" if refused else "")


def _large(path: Path) -> bool:
    return path.stat().st_size >= LARGE_MODEL_BYTES


def _in_rule_order(
    candidates: list[tuple[str, str]], path: Path, quantized: bool
) -> list[tuple[str, str]]:
    """`candidates` (engine, precision) in the order the rule tries them (sorted is stable)."""

    def reduced(engine: str, precision: str) -> bool:
        # An int8 export is int8 on any engine, but only OpenVINO has int8 kernels for it.
        return precision != "f32" or (quantized and engine == "openvino")

    # f32 on a large model: OpenVINO first, whose latency model runs a lone input on every
    # core (ONNX Runtime's call gets one core's threads), as measured in docs/engines.md.
    places = (
        ("reduced", "other", "reference") if _large(path) else ("reference", "other", "reduced")
    )

    def rank(candidate: tuple[str, str]) -> int:
        if reduced(*candidate):
            return places.index("reduced")
        return places.index("reference" if candidate[0] == REFERENCE_ENGINE else "other")

    return sorted(candidates, key=rank)


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


def _verify(
    engine: Engine, reference: ReferenceSet | TensorReference, logits: bool, tolerance: float
) -> ReferenceCheck | TensorCheck:
    try:
        if isinstance(reference, TensorReference):
            return check_tensors(reference, engine.run_named(reference.inputs), tolerance)
        batched = check_reference(reference, engine.run(reference.inputs), logits, tolerance)
        if not batched.passed:
            return batched
        # One input at a time too: an engine may run a lone input another way (OpenVINO's
        # latency model).
        rows = [engine.run(reference.inputs[i : i + 1]) for i in range(len(reference.inputs))]
        return check_reference(reference, np.concatenate(rows), logits, tolerance)
    except Exception as exc:
        raise ServableError(
            f"engine {engine.info.name} cannot run the reference set: {exc}"
        ) from exc
