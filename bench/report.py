"""The benchmark's report: the tables, the targets, and the machine they were measured on."""

from __future__ import annotations

import math
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.stats import Measurement
from pyserving.cores import usable_cores

PACKAGES = (
    "pyserving",
    "onnxruntime",
    "openvino",
    "grpcio",
    "protobuf",
    "numpy",
    "pillow",
    "fastapi",
    "uvicorn",
)
FEATURES = {  # what the engines' reduced precisions need, by the /proc/cpuinfo flags
    "bf16": ("avx512_bf16", "amx_bf16"),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AMX": ("amx_tile", "amx_bf16", "amx_int8"),
}
COLUMNS = (
    "workload",
    "input",
    "concurrency",
    "requests",
    "{unit}",
    "rounds' range",
    "p50 ms",
    "p99 ms",
    "errors",
    "CPU ms/req",
    "cores busy",
)


@dataclass(frozen=True)
class Row:
    """One table line: the median round of a measurement, and every round's.

    `ratio` compares its throughput with a reference (the in-process best, the empty call,
    or pyserving's gRPC row).
    """

    workload: str
    input: str
    concurrency: int
    measurement: Measurement
    ratio: float | None = None
    runs: list[Measurement] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, with what was measured against it (`met` None: skipped)."""

    name: str
    required: str
    measured: str
    met: bool | None


@dataclass
class Report:
    """Everything one benchmark run measured, and where."""

    images: list[Row] = field(default_factory=list)
    http: list[Row] = field(default_factory=list)  # REST (640×480), against gRPC
    rivals: list[Row] = field(default_factory=list)  # pyserving and the plain FastAPI apps
    engines: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # rows this machine cannot run, and why
    overhead: list[Row] = field(default_factory=list)
    overload: list[Row] = field(default_factory=list)  # rejections expected: not errors
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)
    load_after: tuple[float, float, float] | None = None

    def rows(self) -> list[Row]:
        return self.images + self.http + self.rivals + self.engines + self.overhead

    def errors(self) -> int:
        """Failed requests in every round of every row; under overload, those not turned away."""
        failed = sum(m.errors for r in self.rows() for m in (r.runs or [r.measurement]))
        for row in self.overload:
            for m in row.runs or [row.measurement]:
                failed += m.errors - m.error_kinds.get("RESOURCE_EXHAUSTED", 0)
        return failed

    def markdown(self) -> str:
        after = self.load_after or os.getloadavg()
        lines = [
            "# Benchmark results",
            "",
            f"Measured {self.started:%Y-%m-%d %H:%M} UTC by `python -m bench.run` on {machine()}.",
            "",
            f"CPU features: {cpu_features()}.",
            "",
            "Every comparison below is between rows of this run, as a ratio: numbers from "
            "another run, machine or time of day are not comparable with these.",
            "",
            f"Packages: {versions()}.",
            "",
            f"Load average (1, 5, 15 min) before the run: {_load(self.load_before)}; "
            f"after: {_load(after)}. Client and server share the same cores, and other "
            "work on the machine moves the numbers: each row is the median of its rounds, "
            "and CPU ms/req (serving side + load generator) hardly depends on other load; "
            f"cores busy is the CPU time of both over the wall time ({usable_cores()} would be the "
            "whole machine).",
            "",
            *([f"Counts: {self.settings}.", ""] if self.settings else []),
            "## EfficientNet-Lite0 (224×224), one image per request",
            "",
            *_table(self.images, "img/s", ratio="server / in-process"),
            "",
            "## REST",
            "",
            "pyserving's REST port (`POST /v1/models/{name}:classify`, the raw JPEG), through "
            "one keep-alive connection per client; the ratio is over pyserving's gRPC row of "
            "the same input and concurrency.",
            "",
            *_table(self.http, "img/s", ratio="vs. gRPC"),
            "",
            "## pyserving against the plain FastAPI apps",
            "",
            "pyserving's default configuration (`pyserving serve`, REST, the raw JPEG), an "
            "int8 version if one was given (`--int8-version`), and the apps a person would "
            "write instead, each in FastAPI with uvicorn and one worker: "
            "`bench/plain_openvino_app.py` (OpenVINO with `PERFORMANCE_HINT=THROUGHPUT` at its "
            "default precision, an infer request per thread, Pillow in draft mode) and "
            "`bench/plain_app.py` (ONNX Runtime, Pillow). All through the same keep-alive "
            "client; the ratio is over the OpenVINO app's row of the same input and "
            "concurrency.",
            "",
            *_table(self.rivals, "img/s", ratio="vs. OpenVINO app"),
            "",
            "## Engines and precisions",
            "",
            "Per `--engines` pair: the in-process pipeline with that engine, at the best pool "
            "size, and a server started with `--engine E --precision P`; for an `auto` pair, "
            "the in-process row is what its server chose.",
            "",
            *_table(self.engines, "img/s", ratio="server / in-process"),
            "",
            *[f"- skipped: {line}" for line in self.skipped],
            *([""] if self.skipped else []),
            "## Per-request overhead: tiny model and an empty gRPC call",
            "",
            *_table(self.overhead, "req/s", ratio="vs. empty call"),
            "",
        ]
        if self.overload:
            lines += [
                "## Overload: more clients than the queue holds",
                "",
                "The server runs with `--max_enqueued_batches=1`: it holds one running and "
                "one waiting batch (of 4 inputs by default), and turns the rest away with "
                "RESOURCE_EXHAUSTED. A "
                "turned-away client waits 25–75 ms before it tries again, as a gRPC client "
                "with retry backoff would; rejected latency is the time to the rejection.",
                "",
                *_overload_table(self.overload),
                "",
            ]
        if self.targets:
            lines += [
                "## Targets",
                "",
                "| target | required | measured | met |",
                "|---|---|---|---|",
                *(
                    f"| {t.name} | {t.required} | {t.measured} | {_met(t.met)} |"
                    for t in self.targets
                ),
                "",
            ]
        lines += [*(f"- {note}" for note in self.notes), ""] if self.notes else []
        return "\n".join(lines)


def _table(rows: list[Row], unit: str, ratio: str) -> list[str]:
    header = [c.format(unit=unit) for c in COLUMNS] + [ratio]
    lines = _markdown_header(header)
    for row in rows:
        m = row.measurement
        runs = row.runs or [m]
        failed = sum(r.errors for r in runs)
        errors = str(failed)
        if failed:
            kinds: Counter[str] = sum((r.error_kinds for r in runs), Counter())
            errors += " (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")"
        low, high = min(r.throughput for r in runs), max(r.throughput for r in runs)
        cells = [
            *_row_start(row),
            f"{low:,.0f}–{high:,.0f}",
            _ms(m.p50_ms),
            _ms(m.p99_ms),
            errors,
            _cpu(m),
            "–" if m.cores_busy is None else f"{m.cores_busy:.2f}",
            "" if row.ratio is None else f"{row.ratio:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _markdown_header(header: list[str]) -> list[str]:
    """A table's header line and its alignment line (text columns left, numbers right)."""
    return ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]


def _row_start(row: Row) -> list[str]:
    """The cells every table starts with: what, on what, how many at once, how many, rate."""
    m = row.measurement
    return [
        row.workload,
        row.input,
        str(row.concurrency),
        str(m.ok + m.errors),
        f"{m.throughput:,.1f}",
    ]


def _overload_table(rows: list[Row]) -> list[str]:
    header = [
        "workload",
        "input",
        "concurrency",
        "requests",
        "accepted/s",
        "accepted p50 ms",
        "accepted p99 ms",
        "rejected",
        "rejected p50 ms",
        "rejected p99 ms",
        "other errors",
    ]
    lines = _markdown_header(header)
    for row in rows:
        m = row.measurement
        rejected = m.error_kinds.get("RESOURCE_EXHAUSTED", 0)
        cells = [
            *_row_start(row),
            _ms(m.p50_ms),
            _ms(m.p99_ms),
            str(rejected),
            _ms(m.error_percentile_ms(50)),
            _ms(m.error_percentile_ms(99)),
            str(m.errors - rejected),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _met(met: bool | None) -> str:
    return "skipped" if met is None else "PASS" if met else "**MISS**"


def _cpu(m: Measurement) -> str:
    server = m.cpu_ms_per_request(m.cpu_seconds)
    client = m.cpu_ms_per_request(m.client_cpu_seconds)
    if server is None:
        return "–"
    return f"{server:.2f}" if client is None else f"{server:.2f} + {client:.2f}"


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def machine() -> str:
    """CPU model, the cores this process may use, and the OS."""
    return f"{cpu_model()}, {usable_cores()} cores, {platform.system()} {platform.release()}"


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_features() -> str:
    """Whether the CPU computes bf16, has VNNI and AMX (the flags that name them)."""
    flags = set(_cpuinfo("flags").split())
    if not flags:
        return "unknown (no /proc/cpuinfo flags)"
    found = []
    for feature, names in FEATURES.items():
        present = [name for name in names if name in flags]
        found.append(f"{feature} " + (f"yes ({', '.join(present)})" if present else "no"))
    return ", ".join(found)


def _cpuinfo(field_name: str) -> str:
    """The first value of `field_name` in /proc/cpuinfo ("" where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(field_name):
                return line.partition(":")[2].strip()
    return ""


def versions() -> str:
    """Python and the packages whose speed the numbers depend on."""
    found = [f"Python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)
