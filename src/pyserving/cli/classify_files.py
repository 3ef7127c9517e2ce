"""`pyserving classify` over many files: folders, a bounded number in flight, rows out.

Folders are searched recursively and sorted; each file is told by its first bytes (not its
name) to be an input the model takes: an image for an image model, a clip for an audio
model, a UTF-8 text for a text model (the model's kind comes from the server's model
status). What a folder holds that the model does not take gets a `skipped` row; a file
named on the command line is sent whatever it holds. Rows are written in that sorted order
(CSV or JSON Lines, each flushed once the rows before it are), so Ctrl-C leaves a valid
file of what was done.

Exit status: 0 when every input was classified, 1 when some were not (their rows say
why), 2 on bad usage, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pyserving.client import Client
from pyserving.client.formats import (
    CLIP_FORMATS,
    HEAD_BYTES,
    IMAGE_FORMATS,
    clip_type,
    image_type,
    is_text,
)
from pyserving.errors import PyservingError, UsageError
from pyserving.results import Prediction

TABLE_FILES = 10  # up to this many files named one by one print as tables
HOLD_PER_CALL = 4  # rows done ahead of a slow file that may wait, per call in flight
OK, ERROR, SKIPPED = "ok", "error", "skipped"
INTERRUPTED = 130
_PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal
_BAR_EVERY = 0.1
_BAR_WIDTH = 24


@dataclass(frozen=True)
class Row:
    """One file's outcome: its classes (best first), or the error or reason it was skipped."""

    path: str
    status: str  # OK, ERROR or SKIPPED
    model: str = ""
    version: int = 0
    classes: tuple[Prediction, ...] = ()
    error: str = ""


def classify_paths(args: argparse.Namespace, connect: Callable[[], Client]) -> int:
    """Run `pyserving classify PATH... [--output FILE]` and return the exit status.

    `connect` gives the client (the CLI's one builder), once the flags are checked."""
    if args.feature or args.text:
        raise UsageError("--feature and --text take no files; give one or the other")
    open_rows = _writer(args.output, args.top_k)
    inputs = list(collect(args.images))
    with connect() as client:
        model, version, kind = model_kind(client, args.model, args.version, args.label)
        with open_rows() as rows:
            run = Run(client, model, version, kind, args.top_k, args.label)
            counts = run.all(inputs, rows, args.concurrency)
    _summary(counts, args.output)
    if counts.interrupted:
        return INTERRUPTED
    return 1 if counts.errors else 0


def collect(paths: Sequence[Path]) -> Iterator[tuple[Path, bool]]:
    """Each file to look at, and whether it was named itself (True) or found in a folder."""
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    seen: set[Path] = set()
    for path in paths:
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            if file not in seen:
                seen.add(file)
                yield file, not path.is_dir()


def model_kind(client: Client, model: str, version: int, label: str = "") -> tuple[str, int, str]:
    """The model's name, the version asked for (0: newest) and the kind it takes (that of
    the version `label` names, when it is given)."""
    statuses = client.model_status(model)
    if not statuses:
        return model, version, ""
    status = next((m for m in statuses if m.default), statuses[0]) if not model else statuses[0]
    ready = [v for v in status.versions if v.state == "AVAILABLE"]
    chosen = [v for v in ready if v.version == version] if version else ready[-1:]
    if label:
        chosen = [v for v in ready if label in v.labels]
    kind = chosen[0].kind if chosen else ""
    if kind == "features":
        raise UsageError(f"model {status.name} takes named features: give --feature NAME=VALUE")
    if kind == "tensor":
        raise UsageError(f"model {status.name} takes tensors: use pyserving predict")
    return status.name, version, kind


def accepts(kind: str) -> Callable[[bytes], str]:
    """A check of a file's bytes for `kind`: "" when the model takes it, else why not."""
    if kind == "image":
        return lambda data: "" if image_type(data) else f"not an image ({IMAGE_FORMATS})"
    if kind == "audio":
        return lambda data: "" if clip_type(data) else f"not an audio clip ({CLIP_FORMATS})"
    if kind == "text":
        return lambda data: "" if is_text(data) else "not a UTF-8 text"
    # No version available yet, or an older server that does not say: images and clips.
    return lambda data: "" if image_type(data) or clip_type(data) else "not an image or a clip"


@dataclass
class Counts:
    """How a run went so far."""

    total: int
    done: int = 0
    errors: int = 0
    skipped: int = 0
    started: float = 0.0
    interrupted: bool = False

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


class Run:
    """Sends files to one model with a sync `Client` from a pool of threads.

    `all` runs in the main thread, so Ctrl-C reaches it: it stops sending, closes the
    channel (which cancels the calls in flight) and keeps the rows already written.
    """

    def __init__(
        self, client: Client, model: str, version: int, kind: str, top_k: int, label: str = ""
    ) -> None:
        self._client = client
        self._model = model
        self._version = version
        self._label = label
        self._accept = accepts(kind)
        self._top_k = top_k
        self._text = kind == "text"  # the whole file is read to check it

    def all(self, inputs: Sequence[tuple[Path, bool]], rows: Rows, concurrency: int) -> Counts:
        """Classify `inputs`, at most `concurrency` at a time, writing rows in input order.

        A row is written once every row before it is (the sorted prefix); rows done ahead
        of a slow file wait, at most HOLD_PER_CALL per call in flight, and sending pauses
        while that many do. After Ctrl-C the rows done so far are written, in order.
        """
        counts = Counts(len(inputs), started=time.perf_counter())
        progress = Progress(counts, sys.stderr)
        queue = iter(enumerate(inputs))
        pending: dict[Future[Row], int] = {}
        held: dict[int, Row] = {}  # done, waiting for the rows before them
        written = 0  # rows written: the next one to write is inputs[written]
        with ThreadPoolExecutor(concurrency, thread_name_prefix="classify") as pool:
            try:
                while True:
                    while len(pending) < concurrency and len(held) < HOLD_PER_CALL * concurrency:
                        item = next(queue, None)
                        if item is None:
                            break
                        index, (path, named) = item
                        pending[pool.submit(self.one, path, named)] = index
                    if not pending:
                        break
                    done, _ = wait(pending, _BAR_EVERY, FIRST_COMPLETED)
                    for future in done:
                        row = future.result()
                        held[pending.pop(future)] = row
                        counts.done += 1
                        counts.errors += row.status == ERROR
                        counts.skipped += row.status == SKIPPED
                    while written in held:
                        progress.clear(rows.to_terminal)
                        rows.write(held.pop(written))
                        written += 1
                    progress.show()
            except KeyboardInterrupt:
                counts.interrupted = True
                self._client.close()
                for future in pending:
                    future.cancel()
                for index in sorted(held):
                    rows.write(held[index])
            finally:
                progress.clear(True)
        return counts

    def one(self, path: Path, named: bool) -> Row:
        """Read, check and classify one file; its row, whatever happened."""
        try:
            with path.open("rb") as file:
                data = file.read() if self._text else file.read(HEAD_BYTES)
                why_not = self._accept(data)
                if why_not and not named:
                    return Row(str(path), SKIPPED, self._model, self._version, error=why_not)
                if not self._text:
                    data += file.read()
            result = self._client.classify(
                data, self._model, self._version, self._top_k, label=self._label
            )
        except (OSError, PyservingError) as exc:
            return Row(str(path), ERROR, self._model, self._version, error=str(exc))
        except Exception as exc:  # a call cut short by Ctrl-C closing the channel
            return Row(str(path), ERROR, self._model, self._version, error=repr(exc))
        return Row(str(path), OK, result.model_name, result.model_version, result.predictions)


class Progress:
    """A redrawn bar on a terminal; on anything else a plain line every few seconds."""

    def __init__(self, counts: Counts, out: TextIO) -> None:
        self._counts = counts
        self._out = out
        self._tty = out.isatty()
        self._last = 0.0
        self._drawn = False

    def show(self) -> None:
        now = time.perf_counter()
        if now - self._last < (_BAR_EVERY if self._tty else _PLAIN_EVERY):
            return
        self._last = now
        c = self._counts
        line = (
            f"{c.done}/{c.total} files, {c.rate():.1f} files/s, {c.errors} errors, "
            f"{c.skipped} skipped"
        )
        if self._tty:
            filled = _BAR_WIDTH * c.done // max(c.total, 1)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self._out.write(f"\r\x1b[K[{bar}] {line}")
            self._drawn = True
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def clear(self, before_terminal_output: bool) -> None:
        """Erase the bar, so a line printed to the same terminal starts clean."""
        if self._drawn and before_terminal_output:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._drawn = False
            self._last = 0.0


class Rows:
    """Where rows go: a CSV or JSON Lines file, or stdout; each row flushed as written."""

    to_terminal = False

    def __init__(self, out: TextIO, top_k: int) -> None:
        self._out = out
        self._top_k = top_k

    def write(self, row: Row) -> None:
        raise NotImplementedError

    def __enter__(self) -> Rows:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._out is not sys.stdout:
            self._out.close()


class CsvRows(Rows):
    """path, status, model, version, error, then class_1, score_1 ... class_K, score_K."""

    def __init__(self, out: TextIO, top_k: int) -> None:
        super().__init__(out, top_k)
        self._csv = csv.writer(out)
        ranks = [(f"class_{i}", f"score_{i}") for i in range(1, top_k + 1)]
        self._csv.writerow(["path", "status", "model", "version", "error", *_flat(ranks)])
        out.flush()

    def write(self, row: Row) -> None:
        classes = _flat([(p.name, f"{p.score:.6f}") for p in row.classes[: self._top_k]])
        padding = [""] * (2 * self._top_k - len(classes))
        version = str(row.version) if row.version else ""
        self._csv.writerow(
            [row.path, row.status, row.model, version, row.error, *classes, *padding]
        )
        self._out.flush()


class JsonRows(Rows):
    """One JSON object a line: path, status, model, version, classes or error."""

    def write(self, row: Row) -> None:
        line: dict[str, Any] = {
            "path": row.path,
            "status": row.status,
            "model": row.model,
            "version": row.version,
        }
        if row.status == OK:
            line["classes"] = [
                {"name": p.name, "score": p.score, "index": p.index} for p in row.classes
            ]
        else:
            line["error"] = row.error
        self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._out.flush()


class PrintRows(Rows):
    """One line a file on stdout: the path, then the best class and its score, or why not."""

    def __init__(self, out: TextIO, top_k: int) -> None:
        super().__init__(out, top_k)
        self.to_terminal = out.isatty()

    def write(self, row: Row) -> None:
        if row.status == OK and row.classes:
            best = row.classes[0]
            said = f"{best.name}  {best.score:.2%}"
        else:
            said = f"{row.status}: {row.error}"
        self._out.write(f"{row.path}  {said}\n")
        self._out.flush()


def _writer(output: Path | None, top_k: int) -> Callable[[], Rows]:
    """What opens the rows' destination; UsageError for an output it cannot write."""
    if output is None:
        return lambda: PrintRows(sys.stdout, top_k)
    kinds: dict[str, type[Rows]] = {".csv": CsvRows, ".jsonl": JsonRows}
    kind = kinds.get(output.suffix.lower())
    if kind is None:
        raise UsageError(f"--output {output}: give a .csv or a .jsonl file")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: no folder {output.parent}")
    return lambda: kind(output.open("w", encoding="utf-8", newline=""), top_k)


def _summary(counts: Counts, output: Path | None) -> None:
    elapsed = time.perf_counter() - counts.started
    classified = counts.done - counts.errors - counts.skipped
    where = f"; rows in {output}" if output else ""
    if counts.interrupted:
        print(f"interrupted: {counts.done} of {counts.total} files done{where}", file=sys.stderr)
        return
    print(
        f"{counts.total} file{'' if counts.total == 1 else 's'} in {elapsed:.1f} s "
        f"({counts.rate():.1f} files/s): "
        f"{classified} classified, {counts.errors} failed, {counts.skipped} skipped{where}",
        file=sys.stderr,
    )


def _flat(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [item for pair in pairs for item in pair]
