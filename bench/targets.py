"""The issue's targets: each compares a row with a reference row, round by round.

Rows compared with each other are measured seconds apart in the same round, so each
target is computed per round and the median of the rounds is reported.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.keys import (
    CHELSEA,
    EMPTY,
    FEATURES,
    HD,
    INT8,
    LARGE,
    NO_BYTES,
    OVERLOAD,
    OVERLOAD_CONCURRENCY,
    PLAIN_OPENVINO,
    REST,
    SERVER,
    SMALL,
    TINY,
    Key,
)
from bench.report import Target
from bench.stats import Measurement


@dataclass(frozen=True)
class Check:
    """One target: `row` against `reference`, compared as `kind` (see `_compare`)."""

    name: str
    required: str
    row: Key
    reference: Key
    kind: str
    limit: float
    skipped: str | None = None  # why it could not be measured in this run
    failed: str | None = None  # why its row, though asked for, does not count: not met


_AT_MOST = ("p50", "p50 times", "rejected p99", "p99 times")
RIVAL = "the plain FastAPI + OpenVINO app"


def standard_checks(
    saturated: int, one_thread: Key, in_process_best: Key, full_size_best: Key, tiny: int
) -> list[Check]:
    """Every target but the per-engine ones."""
    overload = (OVERLOAD, SMALL, OVERLOAD_CONCURRENCY)
    grpc_1, grpc_n = (SERVER, SMALL, 1), (SERVER, SMALL, saturated)
    return [
        Check(
            f"throughput at concurrency {saturated}, {SMALL}",
            "≥ 90% of the in-process best",
            grpc_n,
            in_process_best,
            "ratio",
            0.90,
        ),
        Check(
            f"p50 at concurrency 1, {SMALL}",
            f"≤ in-process p50 ({one_thread[2]} thread) + 1.5 ms",
            grpc_1,
            one_thread,
            "p50",
            1.5,
        ),
        Check(
            f"throughput at concurrency {saturated}, {LARGE}",
            "≥ 3× the in-process best decoding every pixel",
            (SERVER, LARGE, saturated),
            full_size_best,
            "times",
            3.0,
        ),
        Check(
            f"rejected requests at concurrency {OVERLOAD_CONCURRENCY}, queue bound 1 batch",
            "fail in under 5 ms (p99)",
            overload,
            overload,
            "rejected p99",
            5.0,
        ),
        Check(
            f"p99 of accepted requests at concurrency {OVERLOAD_CONCURRENCY}, queue bound 1 batch",
            f"≤ 3× the p99 at concurrency {saturated}",
            overload,
            grpc_n,
            "p99 times",
            3.0,
        ),
        Check(
            f"tiny model at concurrency {tiny}",
            "≥ 0.6× the empty grpc.aio call",
            (TINY, FEATURES, tiny),
            (EMPTY, NO_BYTES, tiny),
            "share",
            0.6,
        ),
        Check(
            f"REST p50 at concurrency 1, {SMALL}",
            "≤ gRPC p50 at concurrency 1 + 1 ms",
            (REST, SMALL, 1),
            grpc_1,
            "p50",
            1.0,
        ),
        Check(
            f"REST throughput at concurrency {saturated}, {SMALL}",
            f"≥ 95% of gRPC at concurrency {saturated}",
            (REST, SMALL, saturated),
            grpc_n,
            "ratio",
            0.95,
        ),
    ]


def rival_checks(
    saturated: int,
    in_process_best: Key,
    runs_on: str,
    int8_skipped: str | None,
    int8_failed: str | None,
) -> list[Check]:
    """pyserving's default configuration (REST, the raw JPEG) against the plain FastAPI +
    OpenVINO app, and against the same work in process (`runs_on`: its engine and precision).
    """
    rest = (REST, CHELSEA, saturated)
    app = (PLAIN_OPENVINO, CHELSEA, saturated)
    return [
        Check(
            f"default server (REST) at concurrency {saturated}, {CHELSEA}",
            f"≥ 1.3× {RIVAL}",
            rest,
            app,
            "share",
            1.3,
        ),
        Check(
            f"default server (REST) p99 at concurrency {saturated}, {CHELSEA}",
            f"≤ the p99 of {RIVAL}",
            rest,
            app,
            "p99 times",
            1.0,
        ),
        Check(
            f"default server (REST) at concurrency 4, {CHELSEA}",
            f"≥ 1.2× {RIVAL}",
            (REST, CHELSEA, 4),
            (PLAIN_OPENVINO, CHELSEA, 4),
            "share",
            1.2,
        ),
        Check(
            f"default server (REST) p50 at concurrency 1, {CHELSEA}",
            f"≤ 0.8× the p50 of {RIVAL}",
            (REST, CHELSEA, 1),
            (PLAIN_OPENVINO, CHELSEA, 1),
            "p50 times",
            0.8,
        ),
        Check(
            f"default server (REST) at concurrency 4, {HD}",
            f"≥ 1.3× {RIVAL}",
            (REST, HD, 4),
            (PLAIN_OPENVINO, HD, 4),
            "share",
            1.3,
        ),
        Check(
            f"verified int8 version (REST) at concurrency {saturated}, {CHELSEA}",
            f"≥ 1.6× {RIVAL}",
            (INT8, CHELSEA, saturated),
            app,
            "share",
            1.6,
            int8_skipped,
            int8_failed,
        ),
        Check(
            f"default server (REST) at concurrency {saturated}, {CHELSEA}, vs. in process",
            f"≥ 95% of the in-process best with the same engine, precision and "
            f"preprocessing ({runs_on})",
            rest,
            in_process_best,
            "ratio",
            0.95,
        ),
    ]


def evaluate(checks: list[Check], measured: dict[Key, list[Measurement]]) -> list[Target]:
    """The checks whose rows were measured (or that say why they were not), per round."""
    targets: list[Target] = []
    for check in checks:
        if check.skipped is not None:
            targets.append(Target(check.name, check.required, f"skipped: {check.skipped}", None))
            continue
        if check.failed is not None:
            targets.append(Target(check.name, check.required, f"no row: {check.failed}", False))
            continue
        if check.row not in measured or check.reference not in measured:
            continue  # a row this run's options left out
        pairs = zip(measured[check.row], measured[check.reference], strict=True)
        values = [_compare(row, reference, check.kind) for row, reference in pairs]
        value = statistics.median(values)
        met = value <= check.limit if check.kind in _AT_MOST else value >= check.limit
        rounds = ", ".join(_fmt(v, check.kind) for v in values)
        measured_text = f"{_fmt(value, check.kind)} (median of rounds: {rounds})"
        targets.append(Target(check.name, check.required, measured_text, met))
    return targets


def _compare(row: Measurement, reference: Measurement, kind: str) -> float:
    if kind == "p50":
        return row.p50_ms - reference.p50_ms
    if kind == "rejected p99":  # nan (none rejected) fails the check: nothing was shown
        return row.error_percentile_ms(99)
    if kind == "p99 times":
        return row.p99_ms / reference.p99_ms
    if kind == "p50 times":
        return row.p50_ms / reference.p50_ms
    return row.throughput / reference.throughput if reference.throughput else 0.0


def _fmt(value: float, kind: str) -> str:
    return {
        "ratio": f"{value:.0%}",
        "p50": f"{value:+.2f} ms",
        "times": f"{value:.1f}×",
        "rejected p99": f"{value:.2f} ms",
        "p99 times": f"{value:.2f}×",
        "p50 times": f"{value:.2f}×",
        "share": f"{value:.2f}×",
    }[kind]
