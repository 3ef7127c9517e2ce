"""The processes a benchmark talks to: a real `pyserving serve`, or the empty echo service.

Both listen on 127.0.0.1 on a port the OS picks; we read it from their log, with a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_READY = r"gRPC listening on [^\s]+:(\d+)"
ECHO_READY = r"echo listening on [^\s]+:(\d+)"


@dataclass(frozen=True)
class Endpoint:
    """A ready child process: where it listens, and its process id (for its CPU time)."""

    address: str
    pid: int


@contextmanager
def running(
    args: Sequence[str], ready: str, log: Path, timeout: float = 120.0
) -> Iterator[Endpoint]:
    """Run `python ARGS` until the block ends; yields its endpoint once it is ready.

    Raises RuntimeError with its output if it exits or is not ready by the deadline.
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
        yield Endpoint(f"127.0.0.1:{port}", process.pid)
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


def pyserving_server(model_name: str, base_path: Path, extra: Sequence[str] = ()) -> list[str]:
    """The arguments of a `pyserving serve` of one model on a free gRPC loopback port."""
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
        "--rest_api_port",  # none: runs never collide on 8501
        "0",
        *extra,
    ]


def echo_server() -> list[str]:
    """The arguments of the empty echo service on a free loopback port."""
    return ["-m", "bench.echo", "--host", "127.0.0.1", "--port", "0"]
