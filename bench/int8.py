"""The `--int8-version` row: a default `pyserving serve` of a quantised export, verified.

The server checks an int8 version's reference set when it loads it and says what it runs
it on ("runs on engine openvino int8"); the row counts only when that line says int8.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.engines import EnginePair, chosen
from bench.processes import (
    REST_READY,
    SERVER_READY,
    Endpoint,
    free_port,
    last_line,
    pyserving_server,
    running,
)
from pyserving.errors import ServableError
from pyserving.kinds import load_signature
from pyserving.signature import MODEL_FILE

NOT_GIVEN = "no int8 version given"


@dataclass(frozen=True)
class Int8Server:
    """The int8 version's server and what it runs on; or why there is no row: none was
    given (`skipped`), or the one given cannot count (`failed`)."""

    endpoint: Endpoint | None = None
    runs_as: EnginePair | None = None
    skipped: str | None = None
    failed: str | None = None


def int8_version(path: Path) -> Path:
    """The version folder `path` names: itself, or a model folder's newest. SystemExit if
    it is neither."""
    if (path / MODEL_FILE).is_file():
        return path
    versions = [p for p in path.glob("*") if p.name.isdigit() and (p / MODEL_FILE).is_file()]
    if not versions:
        raise SystemExit(
            f"error: --int8-version {path}: expected a version folder (holding {MODEL_FILE}) "
            "or a model folder (holding numbered versions)"
        )
    return max(versions, key=lambda p: int(p.name))


def not_int8(version: Path) -> str | None:
    """Why `version` is not an int8 export (None: it is)."""
    try:
        precision = load_signature(version).precision
    except ServableError as exc:
        return str(exc)
    return None if precision == "int8" else f"{version} is not an int8 export ({precision})"


def start_int8(
    path: Path | None,
    model_name: str,
    server_args: Sequence[str],
    scratch: Path,
    up: ExitStack,
) -> Int8Server:
    """A default server of the int8 version at `path`, with a REST port, until `up` closes."""
    if path is None:
        return Int8Server(skipped=NOT_GIVEN)
    version = int8_version(path)
    why = not_int8(version)
    if why is not None:
        return Int8Server(failed=why)
    print(f"starting a server of the int8 version {version}", file=sys.stderr, flush=True)
    # The version alone in a model folder of its own: the server serves only it.
    base = scratch / "int8" / model_name
    base.mkdir(parents=True)
    (base / version.name).symlink_to(version.resolve(), target_is_directory=True)
    log = scratch / "int8.log"
    args = pyserving_server(model_name, base, server_args, free_port())
    try:
        endpoint = up.enter_context(running(args, SERVER_READY, log, rest_ready=REST_READY))
    except RuntimeError:
        return Int8Server(failed=f"its server did not start: {last_line(log)}")
    runs_as = chosen(EnginePair("auto", "auto"), log.read_text(errors="replace"))
    if runs_as is None:
        return Int8Server(failed=f"its server did not load it: {last_line(log)}")
    if runs_as.precision != "int8":
        return Int8Server(failed=f"its server runs it as {runs_as.label}, not int8")
    return Int8Server(endpoint, runs_as)
