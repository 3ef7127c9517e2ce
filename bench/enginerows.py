"""The `--engines` rows: a server per pair, an in-process pipeline per engine and precision
that runs, what each server is compared with, and what this machine has to skip.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.engines import EnginePair, chosen, skip_reason
from bench.inprocess import Pipeline
from bench.keys import SMALL, Key, in_process, served
from bench.processes import SERVER_READY, Endpoint, last_line, pyserving_server, running
from bench.stats import Measurement
from bench.targets import Check
from pyserving.core.settings import Settings
from pyserving.errors import ServableError

LIMIT = 0.90  # a server's share of its in-process row


@dataclass
class EngineRows:
    """Per `--engines` pair: its server, the concrete pair it runs as, and why any is missing."""

    pairs: tuple[EnginePair, ...]
    servers: dict[EnginePair, Endpoint] = field(default_factory=dict)
    runs_as: dict[EnginePair, EnginePair] = field(default_factory=dict)
    pipelines: dict[EnginePair, Pipeline] = field(default_factory=dict)  # by concrete pair
    why: dict[str, str] = field(default_factory=dict)  # skipped workload: the reason

    def pipeline(self, pair: EnginePair) -> Pipeline | None:
        """The in-process pipeline a pair's row runs, if it can run here."""
        concrete = self.runs_as.get(pair)
        return None if concrete is None else self.pipelines.get(concrete)

    def in_process_key(self, pair: EnginePair, pool: int) -> Key | None:
        concrete = self.runs_as.get(pair)
        if concrete is None or concrete not in self.pipelines:
            return None
        return (in_process(concrete), SMALL, pool)

    def served_key(self, pair: EnginePair, saturated: int) -> Key:
        return (served(pair), SMALL, saturated)

    def reference(
        self, pair: EnginePair, pool: int, median: Mapping[Key, Measurement]
    ) -> Key | None:
        """The in-process row a pair's server is compared with.

        Its own concrete pair's; for an `auto` pair whose choice is unknown, the best
        in-process engine row.
        """
        key = self.in_process_key(pair, pool)
        if key is not None and key in median:
            return key
        if pair.concrete or pair in self.runs_as:
            return None
        keys = [(in_process(p), SMALL, pool) for p in self.pipelines]
        measured = [k for k in keys if k in median]
        return max(measured, key=lambda k: median[k].throughput, default=None)

    def rows(
        self, pool: int, saturated: int, median: Mapping[Key, Measurement]
    ) -> dict[Key, Key | None]:
        """Every engine row measured, with the row its ratio is over (None: no ratio)."""
        rows: dict[Key, Key | None] = {}
        for pair in self.pairs:
            key = self.in_process_key(pair, pool)
            if key is not None:
                rows[key] = None
            rows[self.served_key(pair, saturated)] = self.reference(pair, pool, median)
        return rows

    def checks(self, pool: int, saturated: int, median: Mapping[Key, Measurement]) -> list[Check]:
        """Per pair: its server at concurrency `saturated` against its in-process row."""
        checks = []
        for pair in self.pairs:
            row = self.served_key(pair, saturated)
            name = f"{served(pair)} at concurrency {saturated}, {SMALL}"
            concrete = self.runs_as.get(pair)
            if pair.concrete:
                required = f"≥ {LIMIT:.0%} of in-process with the same engine and precision"
            elif concrete is not None:
                required = f"≥ {LIMIT:.0%} of in-process {concrete.label} (what it chose)"
            else:
                required = f"≥ {LIMIT:.0%} of the best in-process engine row"
            reference = self.reference(pair, pool, median)
            skipped = None
            if pair not in self.servers:
                skipped = self.why.get(served(pair), "its server did not start")
            elif reference is None:
                workload = in_process(concrete or pair)
                skipped = self.why.get(workload, "no in-process row to compare with")
            checks.append(Check(name, required, row, reference or row, "ratio", LIMIT, skipped))
        return checks

    def skipped(self) -> list[str]:
        """One line per row that was not measured: which, and why."""
        return [f"{workload}: {reason}" for workload, reason in self.why.items()]

    def notes(self, default_server: Endpoint) -> list[str]:
        """What the default server and each `auto` pair's server chose to run."""
        auto = EnginePair("auto", "auto")
        notes = []
        default = chosen(auto, default_server.log.read_text(errors="replace"))
        if default is not None:
            notes.append(f"The default server (`pyserving serve`) runs on {default.label}.")
        for pair in self.pairs:
            concrete = self.runs_as.get(pair)
            if not pair.concrete and concrete is not None:
                flags = " ".join(pair.server_flags())
                notes.append(f"With `{flags}`, the server chose {concrete.label}.")
        return notes


def start_engines(
    pairs: tuple[EnginePair, ...],
    model_name: str,
    base: Path,
    version: Path,
    settings: Settings,
    server_args: Sequence[str],
    scratch: Path,
    up: ExitStack,
) -> EngineRows:
    """A server per pair, and a pipeline per concrete pair, until `up` closes.

    What this machine cannot run is left out, with the reason, instead of failing the run.
    """
    rows = EngineRows(pairs)
    for i, pair in enumerate(pairs):
        reason = skip_reason(pair)
        if reason is not None:
            rows.why[served(pair)] = rows.why[in_process(pair)] = reason
            continue
        print(f"starting a server with {pair.label}", file=sys.stderr, flush=True)
        log = scratch / f"engine-{i}.log"
        args = pyserving_server(model_name, base, (*server_args, *pair.server_flags()))
        try:
            rows.servers[pair] = up.enter_context(running(args, SERVER_READY, log))
        except RuntimeError:
            rows.why[served(pair)] = last_line(log)
        concrete = chosen(pair, log.read_text(errors="replace") if log.exists() else "")
        if concrete is None:
            started = pair in rows.servers
            rows.why[in_process(pair)] = (
                "its server did not say which engine it chose" if started else "its server failed"
            )
            continue
        rows.runs_as[pair] = concrete
        if concrete in rows.pipelines or in_process(concrete) in rows.why:
            continue
        try:
            pipeline = Pipeline(version, settings, concrete.engine, concrete.precision)
        except ServableError as exc:
            rows.why[in_process(concrete)] = str(exc)
        else:
            up.callback(pipeline.close)
            rows.pipelines[concrete] = pipeline
    return rows
