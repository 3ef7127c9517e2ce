"""`python -m bench.run`: the in-process baseline, then real servers under closed-loop load.

1. In-process: decode + resize + the engine and precision the default server chose, in
   one process, with the server's engine options, on 1..4 threads; the best is the limit
   the server is compared against (and, for the 4000×3000 photo, the same work with every
   pixel decoded).
2. A real `pyserving serve` of EfficientNet-Lite0 on 127.0.0.1 at each concurrency, with
   a 640×480, a 1920×1080 and a 4000×3000 JPEG, over gRPC and over REST (keep-alive).
3. The rivals: pyserving's default configuration over REST against a plain FastAPI +
   OpenVINO app (`bench/plain_openvino_app.py`) and a plain FastAPI + ONNX Runtime app
   (`bench/plain_app.py`), with the 451×300 and 1920×1080 JPEGs, and an int8 version
   (`--int8-version`) if one is given.
4. Per `--engines` pair: the in-process pipeline with that engine, and a server started
   with `--engine E --precision P`.
5. A tiny four-feature model, beside an empty `grpc.aio` call measured the same way: the
   server's own cost per request, and the protocol's ceiling.

Other work on the machine moves the numbers, so everything is measured in `--rounds`
interleaved rounds (the servers stay up, idle, while the other rows run) and each row
reports its median round. Every loop is bounded by a request count and a time limit.
Prints the tables and writes them, with the machine and package versions, to
`bench/results.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import load
from bench.enginerows import EngineRows, start_engines
from bench.engines import AUTO, EnginePair, chosen, parse_pairs
from bench.images import benchmark_images
from bench.inprocess import Pipeline
from bench.int8 import Int8Server, int8_version, start_int8
from bench.keys import (
    CHELSEA,
    EMPTY,
    FEATURES,
    FULL_SIZE,
    HD,
    IN_PROCESS,
    INT8,
    LARGE,
    NO_BYTES,
    OVERLOAD,
    OVERLOAD_CONCURRENCY,
    PLAIN_ONNXRUNTIME,
    PLAIN_OPENVINO,
    REST,
    SERVER,
    SMALL,
    TINY,
    Key,
)
from bench.models import TINY_INPUT, imagenet_base_path, newest_version, write_tiny_servable
from bench.processes import (
    ECHO_READY,
    PLAIN_APP_READY,
    REST_READY,
    SERVER_READY,
    Endpoint,
    echo_server,
    free_port,
    plain_app,
    pyserving_server,
    running,
)
from bench.report import Report, Row
from bench.stats import Measurement
from bench.targets import evaluate, rival_checks, standard_checks
from pyserving.cli.main import build_parser
from pyserving.cli.serve import serve_settings
from pyserving.core.settings import Settings

SATURATED = 16  # the concurrency the throughput targets are read at
HD_CONCURRENCY = 4  # the 1920×1080 rows' (pyserving and the plain apps)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.md"
DEFAULT_ENGINES = "onnxruntime:f32,openvino:f32,auto:auto"
OVERLOAD_FLAGS = ("--max_enqueued_batches=1",)
OVERLOAD_BACKOFF = 0.05  # seconds a turned-away client waits (±50%) before it tries again
PLAIN_PATH = "/classify"
BEST = " (best)"
FALLBACK = EnginePair("onnxruntime", "f32")  # in process, if the default server does not say
PLAIN_APPS = {PLAIN_OPENVINO: "bench.plain_openvino_app", PLAIN_ONNXRUNTIME: "bench.plain_app"}
RIVALS = (REST, INT8, PLAIN_OPENVINO, PLAIN_ONNXRUNTIME)  # the order of their table's rows


@dataclass(frozen=True)
class Options:
    """What to run, and how much of it."""

    concurrency: tuple[int, ...]
    tiny_concurrency: tuple[int, ...]
    pool_sizes: tuple[int, ...]
    requests: int  # per row with the 640×480 photo
    hd_requests: int  # per row with the 1920×1080 photo
    large_requests: int  # per row with the 4000×3000 photo
    full_size_requests: int  # per in-process row decoding 4000×3000 at full size
    tiny_requests: int  # per row of the tiny model and of the empty call
    seconds: float  # time bound of each row
    rounds: int
    repository: Path | None
    model_name: str
    output: Path | None
    server_args: tuple[str, ...]
    engines: str  # engine:precision pairs, comma-separated
    int8_version: Path | None  # a version folder, or a model folder (its newest version)
    quick: bool

    @property
    def saturated(self) -> int:
        """The concurrency the throughput targets are read at."""
        return SATURATED if SATURATED in self.concurrency else max(self.concurrency)

    @property
    def rest_concurrency(self) -> tuple[int, ...]:
        return tuple(sorted({1, self.saturated}))

    @property
    def rival_concurrency(self) -> tuple[int, ...]:
        return tuple(sorted({1, HD_CONCURRENCY, self.saturated}))


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks, not numbers")
    parser.add_argument("--concurrency", default="1,4,16,64", help="gRPC rows, comma-separated")
    parser.add_argument("--tiny-concurrency", default="1,64", help="tiny-model and empty rows")
    parser.add_argument("--pool-sizes", default="1,2,3,4", help="in-process thread counts")
    parser.add_argument("--requests", type=int, default=250, help="per 640×480 row")
    parser.add_argument("--hd-requests", type=int, default=120, help="per 1920×1080 row")
    parser.add_argument("--large-requests", type=int, default=80, help="per 4000×3000 row")
    parser.add_argument("--full-size-requests", type=int, default=20)
    parser.add_argument("--tiny-requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0, help="time bound of each row")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; median wins")
    parser.add_argument(
        "--engines",
        default=DEFAULT_ENGINES,
        help="engine:precision pairs, comma-separated: an in-process and a server row each",
    )
    parser.add_argument(
        "--repository", type=Path, help="reuse a repository holding the model (else export one)"
    )
    parser.add_argument("--model-name", default="imagenet")
    parser.add_argument(
        "--int8-version",
        type=Path,
        metavar="PATH",
        help="an int8 export (a version folder, or a model folder: its newest version) for "
        "the int8 row against the plain OpenVINO app",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="'-': don't write")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="a `pyserving serve` flag for every server and the baseline's engine options, "
        "e.g. --server-arg=--intra_op_threads=1",
    )
    args = parser.parse_args(argv)
    parse_pairs(args.engines)  # fail now, not after the servers are up
    if args.int8_version is not None:
        int8_version(args.int8_version)
    quick = bool(args.quick)
    return Options(
        concurrency=(1, 4) if quick else _ints(args.concurrency),
        tiny_concurrency=(1, 4) if quick else _ints(args.tiny_concurrency),
        pool_sizes=(1, 2) if quick else _ints(args.pool_sizes),
        requests=8 if quick else args.requests,
        hd_requests=4 if quick else args.hd_requests,
        large_requests=4 if quick else args.large_requests,
        full_size_requests=2 if quick else args.full_size_requests,
        tiny_requests=16 if quick else args.tiny_requests,
        seconds=5.0 if quick else args.seconds,
        rounds=1 if quick else max(1, args.rounds),
        repository=args.repository,
        model_name=args.model_name,
        output=None if str(args.output) == "-" else args.output,
        server_args=tuple(args.server_arg),
        engines=args.engines,
        int8_version=args.int8_version,
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


@dataclass
class Bench:
    """What every round measures with, and what the rounds measured so far."""

    options: Options
    images: dict[str, bytes]
    pipeline: Pipeline
    endpoints: dict[str, Endpoint]  # by workload; INT8 only when it runs
    engines: EngineRows
    int8: Int8Server
    runs_on: EnginePair  # what the default server and the in-process baseline run on
    measured: dict[Key, list[Measurement]]
    pool: int = 0  # the best in-process pool size for 640×480 in the first round
    round: int = 0  # the round being measured, from 1

    def record(self, key: Key, m: Measurement) -> None:
        self.measured.setdefault(key, []).append(m)
        workload, label, c = key
        cpu = m.cpu_ms_per_request(m.cpu_seconds)
        _progress(
            f"  {workload:<36} {label:>10}  c={c:<3} {m.throughput:8.1f}/s  "
            f"p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:7.2f} ms  "
            f"cpu {cpu or 0:6.2f} ms/req  errors {m.errors}"
        )

    async def grpc(
        self, workload: str, label: str, c: int, count: int, endpoint: Endpoint | None = None
    ) -> None:
        """One closed-loop gRPC row against `endpoint` (by default the workload's server)."""
        endpoint = endpoint or self.endpoints[workload]
        m = await load.classify_load(
            endpoint.address,
            c,
            count,
            self.options.seconds,
            image=self.images[label],
            warmup=2 * c,
            server_pid=endpoint.pid,
        )
        self.record((workload, label, c), m)

    async def http(self, workload: str, label: str, c: int, count: int) -> None:
        """One closed-loop row of keep-alive POSTs of the photo: REST, or a plain app."""
        if workload in (REST, INT8):
            endpoint = self.endpoints[SERVER if workload == REST else INT8]
            address, path = endpoint.rest, f"/v1/models/{self.options.model_name}:classify"
        else:
            endpoint = self.endpoints[workload]
            address, path = endpoint.address, PLAIN_PATH
        assert address is not None, "the server was started with a REST port"
        m = await load.http_load(
            address,
            path,
            c,
            count,
            self.options.seconds,
            self.images[label],
            warmup=2 * c,
            server_pid=endpoint.pid,
        )
        self.record((workload, label, c), m)


async def run(options: Options) -> Report:
    """Every measurement, round after round; the report holds each row's median round."""
    report = Report()
    if options.quick:
        report.notes.append("`--quick` run: counts too small for the numbers to mean anything.")
    with tempfile.TemporaryDirectory(prefix="pyserving-bench-") as scratch_dir, ExitStack() as up:
        scratch = Path(scratch_dir)
        images = benchmark_images()
        _progress("preparing EfficientNet-Lite0" + ("" if options.repository else " (export)"))
        base = imagenet_base_path(options.repository, scratch / "models", options.model_name)
        version = newest_version(base)
        settings = _server_settings(base, options.server_args)
        tiny_base = write_tiny_servable(scratch / "tiny")
        name, extra = options.model_name, options.server_args
        servers = {
            SERVER: (pyserving_server(name, base, extra, free_port()), SERVER_READY),
            OVERLOAD: (pyserving_server(name, base, (*extra, *OVERLOAD_FLAGS)), SERVER_READY),
            TINY: (pyserving_server("tiny", tiny_base, extra), SERVER_READY),
            EMPTY: (echo_server(), ECHO_READY),
            **{
                app: (plain_app(version, module), PLAIN_APP_READY)
                for app, module in PLAIN_APPS.items()
            },
        }
        _progress("starting the servers")
        endpoints = {
            workload: up.enter_context(
                running(
                    args,
                    ready,
                    scratch / f"{i}.log",
                    rest_ready=REST_READY if workload == SERVER else None,
                )
            )
            for i, (workload, (args, ready)) in enumerate(servers.items())
        }
        runs_on = chosen(EnginePair(AUTO, AUTO), endpoints[SERVER].log.read_text(errors="replace"))
        if runs_on is None:
            runs_on = FALLBACK
            report.notes.append(
                f"The default server's log does not say what it runs on: the in-process "
                f"baseline runs {FALLBACK.label}."
            )
        pipeline = Pipeline(version, settings, runs_on.engine, runs_on.precision)
        up.callback(pipeline.close)
        engines = start_engines(
            parse_pairs(options.engines), name, base, version, settings, extra, scratch, up
        )
        report.notes += engines.notes(endpoints[SERVER])
        int8 = start_int8(options.int8_version, name, extra, scratch, up)
        if int8.endpoint is not None and int8.runs_as is not None:
            endpoints[INT8] = int8.endpoint
            report.notes.append(f"The int8 version's server runs it on {int8.runs_as.label}.")
        bench = Bench(options, images, pipeline, endpoints, engines, int8, runs_on, {})
        for number in range(1, options.rounds + 1):
            _progress(f"round {number} of {options.rounds}")
            bench.round = number
            await _round(bench)
    report.load_after = os.getloadavg()
    _fill(report, bench)
    return report


def _server_settings(base: Path, server_args: Sequence[str]) -> Settings:
    """The Settings the benchmark's server runs with, for the baseline's engine options."""
    args = build_parser().parse_args(["serve", "--model_base_path", str(base), *server_args])
    return serve_settings(args)


async def _round(bench: Bench) -> None:
    """One measurement of every row; rows compared with each other run back to back."""
    options = bench.options
    runs = bench.pipeline.baseline(
        bench.images[SMALL], options.pool_sizes, options.requests, options.seconds
    )
    for threads, m in runs.items():
        bench.record((IN_PROCESS, SMALL, threads), m)
    bench.pool = bench.pool or max(runs, key=lambda n: runs[n].throughput)
    for c in sorted({*options.concurrency, *options.rest_concurrency}):
        if c in options.concurrency:
            await bench.grpc(SERVER, SMALL, c, options.requests)
        if c in options.rest_concurrency:
            await bench.http(REST, SMALL, c, options.requests)
    await _rivals(bench)
    await _engine_rows(bench)
    await _overload(bench)
    await bench.grpc(SERVER, HD, HD_CONCURRENCY, options.hd_requests)
    await _large(bench)
    await _tiny(bench)


async def _rivals(bench: Bench) -> None:
    """pyserving's default configuration over REST (and the int8 version) and the plain
    apps, back to back per photo and concurrency, after the same work in process."""
    options = bench.options
    runs = bench.pipeline.baseline(
        bench.images[CHELSEA], options.pool_sizes, options.requests, options.seconds
    )
    for threads, m in runs.items():
        bench.record((IN_PROCESS, CHELSEA, threads), m)
    plan = [(CHELSEA, c, options.requests) for c in options.rival_concurrency]
    plan.append((HD, HD_CONCURRENCY, options.hd_requests))
    # Every other round the other way round, so that neither side always goes first.
    order = RIVALS if bench.round % 2 else RIVALS[::-1]
    for label, c, count in plan:
        with_int8 = INT8 in bench.endpoints and (label, c) == (CHELSEA, options.saturated)
        for workload in order:
            if workload != INT8 or with_int8:
                await bench.http(workload, label, c, count)


async def _engine_rows(bench: Bench) -> None:
    """Per pair, its in-process row (once per concrete pair), then its server's."""
    options, engines = bench.options, bench.engines
    done: set[Key] = set()
    for pair in engines.pairs:
        pipeline = engines.pipeline(pair)
        key = engines.in_process_key(pair, bench.pool)
        if pipeline is not None and key is not None and key not in done:
            runs = pipeline.baseline(
                bench.images[SMALL], [bench.pool], options.requests, options.seconds
            )
            bench.record(key, runs[bench.pool])
            done.add(key)
        endpoint = engines.servers.get(pair)
        if endpoint is not None:
            workload = engines.served_key(pair, options.saturated)[0]
            await bench.grpc(workload, SMALL, options.saturated, options.requests, endpoint)


async def _overload(bench: Bench) -> None:
    """More clients than the queue holds; the surplus is turned away."""
    options, endpoint = bench.options, bench.endpoints[OVERLOAD]
    c = OVERLOAD_CONCURRENCY
    m = await load.classify_load(
        endpoint.address,
        c,
        4 * options.requests,
        options.seconds,
        image=bench.images[SMALL],
        warmup=2 * c,
        server_pid=endpoint.pid,
        backoff=OVERLOAD_BACKOFF,
    )
    bench.record((OVERLOAD, SMALL, c), m)


async def _large(bench: Bench) -> None:
    """4000×3000: in process with draft-mode decode and decoding every pixel, then served."""
    options, image = bench.options, bench.images[LARGE]
    plans = (
        (IN_PROCESS, options.large_requests, False),
        (FULL_SIZE, options.full_size_requests, True),
    )
    for workload, count, full_size in plans:
        runs = bench.pipeline.baseline(image, options.pool_sizes, count, options.seconds, full_size)
        for threads, m in runs.items():
            bench.record((workload, LARGE, threads), m)
    for c in options.concurrency:
        await bench.grpc(SERVER, LARGE, c, options.large_requests)


async def _tiny(bench: Bench) -> None:
    """The tiny model, and the empty call at the same concurrency right after it."""
    options, tiny, empty = bench.options, bench.endpoints[TINY], bench.endpoints[EMPTY]
    for c in options.tiny_concurrency:
        m = await load.classify_load(
            tiny.address,
            c,
            options.tiny_requests,
            options.seconds,
            features=TINY_INPUT,
            warmup=2 * c,
            server_pid=tiny.pid,
        )
        bench.record((TINY, FEATURES, c), m)
        m = await load.echo_load(
            empty.address, c, options.tiny_requests, options.seconds, 2 * c, empty.pid
        )
        bench.record((EMPTY, NO_BYTES, c), m)


def _median(runs: list[Measurement]) -> Measurement:
    """The round with the median throughput (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda m: m.throughput)
    return ordered[(len(ordered) - 1) // 2]


def _add_row(
    report: Report,
    key: Key,
    m: Measurement,
    runs: list[Measurement],
    median: dict[Key, Measurement],
    best: dict[tuple[str, str], Key],
    engine_rows: dict[Key, Key | None],
) -> None:
    """Put one median row in its table, with the ratio to what it is compared with."""
    workload, label, c = key
    if workload in (IN_PROCESS, FULL_SIZE):
        name = workload + (BEST if best[(workload, label)] == key else "")
        report.images.append(Row(name, label, c, m, runs=runs))
    elif workload == SERVER:
        reference = best.get((IN_PROCESS, label))
        ratio = _ratio(m, median[reference]) if reference else None
        report.images.append(Row(workload, label, c, m, ratio, runs))
    elif workload == REST and label == SMALL:
        grpc = median.get((SERVER, label, c))
        ratio = _ratio(m, grpc) if grpc else None
        report.http.append(Row(workload, label, c, m, ratio, runs))
    elif workload in RIVALS:
        app = median.get((PLAIN_OPENVINO, label, c))
        ratio = _ratio(m, app) if app else None
        report.rivals.append(Row(workload, label, c, m, ratio, runs))
    elif workload == OVERLOAD:
        report.overload.append(Row(workload, label, c, m, runs=runs))
    elif workload == TINY:
        ratio = _ratio(m, median[(EMPTY, NO_BYTES, c)])
        report.overhead.append(Row(workload, label, c, m, ratio, runs))
    elif workload == EMPTY:
        report.overhead.append(Row(workload, label, c, m, runs=runs))
    elif key in engine_rows:
        reference_key = engine_rows[key]
        ratio = _ratio(m, median[reference_key]) if reference_key else None
        report.engines.append(Row(workload, label, c, m, ratio, runs))


def _fill(report: Report, bench: Bench) -> None:
    """The report's rows (median rounds), ratios and targets."""
    options, measured, engines = bench.options, bench.measured, bench.engines
    median = {key: _median(runs) for key, runs in measured.items()}
    best: dict[tuple[str, str], Key] = {}
    for key, m in median.items():
        workload, label, _ = key
        if workload in (IN_PROCESS, FULL_SIZE):
            current = best.get((workload, label))
            if current is None or m.throughput > median[current].throughput:
                best[(workload, label)] = key
    engine_rows = engines.rows(bench.pool, options.saturated, median)
    for key, m in median.items():
        _add_row(report, key, m, measured[key], median, best, engine_rows)
    labels = list(bench.images)
    report.rivals.sort(
        key=lambda row: (labels.index(row.input), row.concurrency, RIVALS.index(row.workload))
    )
    report.skipped = engines.skipped()
    checks = standard_checks(
        options.saturated,
        (IN_PROCESS, SMALL, min(options.pool_sizes)),
        best[(IN_PROCESS, SMALL)],
        best[(FULL_SIZE, LARGE)],
        max(options.tiny_concurrency),
    )
    checks += rival_checks(
        options.saturated,
        best[(IN_PROCESS, CHELSEA)],
        bench.runs_on.label,
        bench.int8.skipped,
        bench.int8.failed,
    )
    checks += engines.checks(bench.pool, options.saturated, median)
    report.targets = evaluate(checks, measured)
    report.settings = (
        f"{options.rounds} round(s); per row at most {options.requests} requests (640×480), "
        f"{options.hd_requests} (1920×1080), {options.large_requests} (4000×3000), "
        f"{options.full_size_requests} (full-size decode), {4 * options.requests} (overload), "
        f"{options.tiny_requests} (tiny model, empty call), and {options.seconds:g} s; "
        f"engines {options.engines}"
        + (f"; int8 version {options.int8_version}" if options.int8_version else "")
        + (f"; server flags {' '.join(options.server_args)}" if options.server_args else "")
    )


def _ratio(m: Measurement, reference: Measurement) -> float | None:
    return m.throughput / reference.throughput if reference.throughput > 0 else None


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
