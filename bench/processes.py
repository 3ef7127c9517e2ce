"""The processes a benchmark talks to: a real `pyserving serve`, the empty echo service, or
a plain FastAPI app.

All listen on 127.0.0.1 on a port the OS picks; we read it from their log, with a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_READY = r"gRPC listening on [^\s]+:(\d+)"
REST_READY = r"REST listening on https?://[^\s]+:(\d+)"
ECHO_READY = r"echo listening on [^\s]+:(\d+)"
PLAIN_APP_READY = r"Uvicorn running on http://[^\s]+:(\d+)"  # both plain apps


@dataclass(frozen=True)
class Endpoint:
    """A ready child process: where it listens (and its REST port), its pid and its log."""

    address: str
    pid: int
    log: Path
    rest: str | None = None


@contextmanager
def running(
    args: Sequence[str],
    ready: str,
    log: Path,
    timeout: float = 120.0,
    rest_ready: str | None = None,
) -> Iterator[Endpoint]:
    """Run `python ARGS` until the block ends; yields its endpoint once it is ready.

    With `rest_ready`, its log must also say where REST listens by then (pyserving logs
    that before the gRPC line). Raises RuntimeError with its output if it exits or is not
    ready by the deadline.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,  # so that `-m bench.echo` imports from any working directory
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        port = _wait_ready(process, re.compile(ready), log, timeout)
        rest = None
        if rest_ready is not None:
            match = re.search(rest_ready, log.read_text(errors="replace"))
            if match is None:
                raise RuntimeError(f"{process.args!r} has no REST port:\n{log.read_text()}")
            rest = f"127.0.0.1:{match.group(1)}"
        yield Endpoint(f"127.0.0.1:{port}", process.pid, log, rest)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_ready(
    process: subprocess.Popen[bytes], pattern: re.Pattern[str], log: Path, timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = pattern.search(text)
        if match:
            return match.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited {process.returncode}:\n{text}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{process.args!r} not ready in {timeout} s:\n{log.read_text()}")


def pyserving_server(
    model_name: str, base_path: Path, extra: Sequence[str] = (), rest_port: int = 0
) -> list[str]:
    """The arguments of a `pyserving serve` of one model on loopback (`rest_port` 0: no REST)."""
    return [
        "-m",
        "pyserving",
        "serve",
        "--model_name",
        model_name,
        "--model_base_path",
        str(base_path),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--file_system_poll_wait_seconds",
        "0",
        "--rest_api_port",  # 0, none: runs never collide on 8501
        str(rest_port),
        *extra,
    ]


def echo_server() -> list[str]:
    """The arguments of the empty echo service on a free loopback port."""
    return ["-m", "bench.echo", "--host", "127.0.0.1", "--port", "0"]


def plain_app(version_folder: Path, module: str = "bench.plain_app") -> list[str]:
    """The arguments of plain FastAPI app `module` for one model version, on a free port."""
    return ["-m", module, "--model-dir", str(version_folder), "--port", "0"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for the REST port of the REST rows' server.

    `pyserving serve --rest_api_port 0` means no REST port rather than any free one, so the
    server is given one; `running` reads back from its log what it bound.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def last_line(log: Path) -> str:
    """The last line a process that did not start (or load) wrote: usually why."""
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "it exited before it was ready"
