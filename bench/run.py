"""`python -m bench.run`: the in-process baseline, then real servers under closed-loop load.

1. In-process: decode + resize + ONNX Runtime in one process, with the server's session
   options, on 1..4 threads; the best is the limit the server is compared against (and,
   for the 4000×3000 photo, the same work with every pixel decoded).
2. A real `pyserving serve` of EfficientNet-Lite0 on 127.0.0.1 at each concurrency, with
   a 640×480 and a 4000×3000 JPEG.
3. A tiny four-feature model, beside an empty `grpc.aio` call measured the same way: the
   server's own cost per request, and the protocol's ceiling.

Other work on the machine moves the numbers, so everything is measured in `--rounds`
interleaved rounds (the servers stay up, idle, while the in-process rows run) and each
row reports its median round. Every loop is bounded by a request count and a time limit.
Prints the tables and writes them, with the machine and package versions, to
`bench/results.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import load
from bench.images import benchmark_images
from bench.inprocess import Pipeline
from bench.models import TINY_INPUT, imagenet_base_path, newest_version, write_tiny_servable
from bench.processes import (
    ECHO_READY,
    SERVER_READY,
    Endpoint,
    echo_server,
    pyserving_server,
    running,
)
from bench.report import Report, Row, Target
from bench.stats import Measurement
from pyserving.cli import build_parser, serve_settings
from pyserving.settings import Settings

SMALL, LARGE = "640×480", "4000×3000"
SATURATED = 16  # the concurrency the throughput targets are read at
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.md"
IN_PROCESS, FULL_SIZE = "in-process", "in-process, full-size decode"
SERVER, TINY, EMPTY = "server", "server, tiny model", "grpc.aio empty call"
OVERLOAD = "server, queue bound 1 batch"
OVERLOAD_FLAGS = ("--max_enqueued_batches=1",)
OVERLOAD_CONCURRENCY = 64
OVERLOAD_BACKOFF = 0.05  # seconds a turned-away client waits (±50%) before it tries again
BEST = " (best)"

Key = tuple[str, str, int]  # workload, input, concurrency (threads in-process)


@dataclass(frozen=True)
class Options:
    """What to run, and how much of it."""

    concurrency: tuple[int, ...]
    tiny_concurrency: tuple[int, ...]
    pool_sizes: tuple[int, ...]
    requests: int  # per row with the 640×480 photo
    large_requests: int  # per row with the 4000×3000 photo
    full_size_requests: int  # per in-process row decoding 4000×3000 at full size
    tiny_requests: int  # per row of the tiny model and of the empty call
    seconds: float  # time bound of each row
    rounds: int
    repository: Path | None
    model_name: str
    output: Path | None
    server_args: tuple[str, ...]
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks, not numbers")
    parser.add_argument("--concurrency", default="1,4,16,64", help="image rows, comma-separated")
    parser.add_argument("--tiny-concurrency", default="1,64", help="tiny-model and empty rows")
    parser.add_argument("--pool-sizes", default="1,2,3,4", help="in-process thread counts")
    parser.add_argument("--requests", type=int, default=250, help="per 640×480 row")
    parser.add_argument("--large-requests", type=int, default=80, help="per 4000×3000 row")
    parser.add_argument("--full-size-requests", type=int, default=20)
    parser.add_argument("--tiny-requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0, help="time bound of each row")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; median wins")
    parser.add_argument(
        "--repository", type=Path, help="reuse a repository holding the model (else export one)"
    )
    parser.add_argument("--model-name", default="imagenet")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="'-': don't write")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="a `pyserving serve` flag for both servers and the baseline's session options, "
        "e.g. --server-arg=--intra_op_threads=1",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Options(
        concurrency=(1, 4) if quick else _ints(args.concurrency),
        tiny_concurrency=(1, 4) if quick else _ints(args.tiny_concurrency),
        pool_sizes=(1, 2) if quick else _ints(args.pool_sizes),
        requests=8 if quick else args.requests,
        large_requests=4 if quick else args.large_requests,
        full_size_requests=2 if quick else args.full_size_requests,
        tiny_requests=16 if quick else args.tiny_requests,
        seconds=5.0 if quick else args.seconds,
        rounds=1 if quick else max(1, args.rounds),
        repository=args.repository,
        model_name=args.model_name,
        output=None if str(args.output) == "-" else args.output,
        server_args=tuple(args.server_arg),
        quick=quick,
    )


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise SystemExit(f"error: expected comma-separated positive integers, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report = asyncio.run(run(options))
    text = report.markdown()
    print(text)
    if options.output is not None:
        options.output.write_text(text, encoding="utf-8")
        _progress(f"written to {options.output}")
    return 1 if report.errors() else 0


async def run(options: Options) -> Report:
    """Every measurement, round after round; the report holds each row's median round."""
    report = Report()
    if options.quick:
        report.notes.append("`--quick` run: counts too small for the numbers to mean anything.")
    measured: dict[Key, list[Measurement]] = {}
    with tempfile.TemporaryDirectory(prefix="pyserving-bench-") as scratch_dir, ExitStack() as up:
        scratch = Path(scratch_dir)
        images = benchmark_images()
        _progress("preparing EfficientNet-Lite0" + ("" if options.repository else " (export)"))
        base = imagenet_base_path(options.repository, scratch / "models", options.model_name)
        settings = _server_settings(base, options.server_args)
        pipeline = Pipeline(newest_version(base), settings)
        tiny_base = write_tiny_servable(scratch / "tiny")
        servers = {
            SERVER: pyserving_server(options.model_name, base, options.server_args),
            OVERLOAD: pyserving_server(
                options.model_name, base, (*options.server_args, *OVERLOAD_FLAGS)
            ),
            TINY: pyserving_server("tiny", tiny_base, options.server_args),
            EMPTY: echo_server(),
        }
        ready = {SERVER: SERVER_READY, OVERLOAD: SERVER_READY, TINY: SERVER_READY}
        ready[EMPTY] = ECHO_READY
        endpoints = {
            name: up.enter_context(running(args, ready[name], scratch / f"{i}.log"))
            for i, (name, args) in enumerate(servers.items())
        }
        for number in range(1, options.rounds + 1):
            _progress(f"round {number} of {options.rounds}")
            await _round(options, pipeline, endpoints, images, measured)
    report.load_after = os.getloadavg()
    _fill(report, options, measured)
    return report


def _server_settings(base: Path, server_args: Sequence[str]) -> Settings:
    """The Settings the benchmark's server runs with, for the baseline's session options."""
    args = build_parser().parse_args(["serve", "--model_base_path", str(base), *server_args])
    return serve_settings(args)


async def _round(
    options: Options,
    pipeline: Pipeline,
    servers: dict[str, Endpoint],
    images: dict[str, bytes],
    measured: dict[Key, list[Measurement]],
) -> None:
    """One measurement of every row; rows compared with each other run back to back."""
    for label, requests in ((SMALL, options.requests), (LARGE, options.large_requests)):
        plans = [(IN_PROCESS, requests, False)]
        if label == LARGE:
            plans.append((FULL_SIZE, options.full_size_requests, True))
        for workload, count, full_size in plans:
            runs = pipeline.baseline(
                images[label], options.pool_sizes, count, options.seconds, full_size
            )
            for threads, m in runs.items():
                _record(measured, (workload, label, threads), m)
        for c in options.concurrency:
            m = await load.classify_load(
                servers[SERVER].address,
                c,
                requests,
                options.seconds,
                image=images[label],
                warmup=2 * c,
                server_pid=servers[SERVER].pid,
            )
            _record(measured, (SERVER, label, c), m)
        if label == SMALL:
            # Overload: more clients than the queue holds; the surplus is turned away.
            c = OVERLOAD_CONCURRENCY
            m = await load.classify_load(
                servers[OVERLOAD].address,
                c,
                4 * requests,
                options.seconds,
                image=images[label],
                warmup=2 * c,
                server_pid=servers[OVERLOAD].pid,
                backoff=OVERLOAD_BACKOFF,
            )
            _record(measured, (OVERLOAD, label, c), m)
    for c in options.tiny_concurrency:
        m = await load.classify_load(
            servers[TINY].address,
            c,
            options.tiny_requests,
            options.seconds,
            features=TINY_INPUT,
            warmup=2 * c,
            server_pid=servers[TINY].pid,
        )
        _record(measured, (TINY, "4 features", c), m)
        m = await load.echo_load(
            servers[EMPTY].address,
            c,
            options.tiny_requests,
            options.seconds,
            2 * c,
            servers[EMPTY].pid,
        )
        _record(measured, (EMPTY, "0 bytes", c), m)


def _record(measured: dict[Key, list[Measurement]], key: Key, m: Measurement) -> None:
    measured.setdefault(key, []).append(m)
    workload, label, c = key
    cpu = m.cpu_ms_per_request(m.cpu_seconds)
    _progress(
        f"  {workload:<30} {label:>10}  c={c:<3} {m.throughput:8.1f}/s  "
        f"p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:7.2f} ms  "
        f"cpu {cpu or 0:6.2f} ms/req  errors {m.errors}"
    )


def _median(runs: list[Measurement]) -> Measurement:
    """The round with the median throughput (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda m: m.throughput)
    return ordered[(len(ordered) - 1) // 2]


def _fill(report: Report, options: Options, measured: dict[Key, list[Measurement]]) -> None:
    """The report's rows (median rounds), ratios and targets."""
    median = {key: _median(runs) for key, runs in measured.items()}
    best: dict[tuple[str, str], Key] = {}
    for key, m in median.items():
        workload, label, _ = key
        if workload in (IN_PROCESS, FULL_SIZE):
            current = best.get((workload, label))
            if current is None or m.throughput > median[current].throughput:
                best[(workload, label)] = key
    for key, m in median.items():
        workload, label, c = key
        runs = measured[key]
        if workload in (IN_PROCESS, FULL_SIZE):
            name = workload + (BEST if best[(workload, label)] == key else "")
            report.images.append(Row(name, label, c, m, runs=runs))
        elif workload == SERVER:
            reference = median[best[(IN_PROCESS, label)]].throughput
            report.images.append(Row(workload, label, c, m, _ratio(m, reference), runs))
        elif workload == OVERLOAD:
            report.overload.append(Row(workload, label, c, m, runs=runs))
        elif workload == TINY:
            reference = median[(EMPTY, "0 bytes", c)].throughput
            report.overhead.append(Row(workload, label, c, m, _ratio(m, reference), runs))
        else:
            report.overhead.append(Row(workload, label, c, m, runs=runs))
    report.targets = _targets(options, measured, best)
    report.settings = (
        f"{options.rounds} round(s); per row at most {options.requests} requests (640×480), "
        f"{options.large_requests} (4000×3000), {options.full_size_requests} (full-size "
        f"decode), {4 * options.requests} (overload), {options.tiny_requests} (tiny model, "
        f"empty call), and {options.seconds:g} s"
        + (f"; server flags {' '.join(options.server_args)}" if options.server_args else "")
    )


def _targets(
    options: Options,
    measured: dict[Key, list[Measurement]],
    best: dict[tuple[str, str], Key],
) -> list[Target]:
    """The issue's three targets, from the median rounds; per-round values beside them."""
    saturated = SATURATED if SATURATED in options.concurrency else max(options.concurrency)
    targets: list[Target] = []

    def per_round(server: Key, reference: Key, f: str) -> tuple[float, str]:
        pairs = zip(measured[server], measured[reference], strict=True)
        values = [_compare(s, r, f) for s, r in pairs]
        return statistics.median(values), ", ".join(_fmt(v, f) for v in values)

    one_thread = (IN_PROCESS, SMALL, min(options.pool_sizes))
    checks = [
        (
            f"throughput at concurrency {saturated}, {SMALL}",
            "≥ 90% of the in-process best",
            (SERVER, SMALL, saturated),
            best[(IN_PROCESS, SMALL)],
            "ratio",
            0.90,
        ),
        (
            f"p50 at concurrency 1, {SMALL}",
            f"≤ in-process p50 ({min(options.pool_sizes)} thread) + 1.5 ms",
            (SERVER, SMALL, 1),
            one_thread,
            "p50",
            1.5,
        ),
        (
            f"throughput at concurrency {saturated}, {LARGE}",
            "≥ 3× the in-process best decoding every pixel",
            (SERVER, LARGE, saturated),
            best[(FULL_SIZE, LARGE)],
            "times",
            3.0,
        ),
    ]
    overload = (OVERLOAD, SMALL, OVERLOAD_CONCURRENCY)
    checks += [
        (
            f"rejected requests at concurrency {overload[2]}, queue bound 1 batch",
            "fail in under 5 ms (p99)",
            overload,
            overload,
            "rejected p99",
            5.0,
        ),
        (
            f"p99 of accepted requests at concurrency {overload[2]}, queue bound 1 batch",
            f"≤ 3× the p99 at concurrency {saturated}",
            overload,
            (SERVER, SMALL, saturated),
            "p99 times",
            3.0,
        ),
    ]
    tiny_c = max(options.tiny_concurrency)
    checks.append(
        (
            f"tiny model at concurrency {tiny_c}",
            "≥ 0.6× the empty grpc.aio call",
            (TINY, "4 features", tiny_c),
            (EMPTY, "0 bytes", tiny_c),
            "share",
            0.6,
        )
    )
    for name, required, server, reference, f, limit in checks:
        if server not in measured or reference not in measured:
            continue
        value, rounds = per_round(server, reference, f)
        met = value <= limit if f in _AT_MOST else value >= limit
        measured_text = f"{_fmt(value, f)} (median of rounds: {rounds})"
        targets.append(Target(name, required, measured_text, met))
    return targets


_AT_MOST = ("p50", "rejected p99", "p99 times")


def _compare(server: Measurement, reference: Measurement, f: str) -> float:
    if f == "p50":
        return server.p50_ms - reference.p50_ms
    if f == "rejected p99":  # nan (none rejected) fails the check: nothing was shown
        return server.error_percentile_ms(99)
    if f == "p99 times":
        return server.p99_ms / reference.p99_ms
    return server.throughput / reference.throughput if reference.throughput else 0.0


def _fmt(value: float, f: str) -> str:
    return {
        "ratio": f"{value:.0%}",
        "p50": f"{value:+.2f} ms",
        "times": f"{value:.1f}×",
        "rejected p99": f"{value:.2f} ms",
        "p99 times": f"{value:.2f}×",
        "share": f"{value:.2f}×",
    }[f]


def _ratio(m: Measurement, reference: float) -> float | None:
    return m.throughput / reference if reference > 0 else None


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
