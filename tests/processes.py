"""Start real pyserving processes for tests and wait for them with a deadline, not a sleep."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass
class RunningProcess:
    """A child process whose output goes to `log`; `match` is the ready line's match."""

    process: subprocess.Popen[bytes]
    log: Path
    match: re.Match[str]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` and wait for the exit code; kill if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m pyserving ARGS` to its end, no stdin, its output captured as text.

    `env` replaces the environment when given; `check` raises on a non-zero exit.
    """
    return subprocess.run(
        [sys.executable, "-m", "pyserving", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=check,
    )


def start_process(
    args: Sequence[str],
    ready: str,
    log: Path,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> RunningProcess:
    """Run `python -m pyserving ARGS`, and return once its output matches the regex `ready`.

    `prefix` runs it under another program (`strace ...`).

    Raises RuntimeError with the output if the process exits or the deadline passes first.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "pyserving", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    pattern = re.compile(ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = pattern.search(text)
        if match:
            return RunningProcess(process, log, match)
        if process.poll() is not None:
            raise RuntimeError(f"pyserving {' '.join(args)} exited {process.returncode}:\n{text}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"pyserving {' '.join(args)} not ready in {timeout} s:\n{log.read_text()}")


GRPC_READY = r"gRPC listening on [^\s]+:(\d+)"


def start_server(
    model_name: str, base_path: Path, log: Path, *extra: str, prefix: Sequence[str] = ()
) -> RunningProcess:
    """A real `pyserving serve` of one model (under `prefix`, a program that runs it, if
    given); its gRPC port is `match.group(1)`."""
    return start_serve(
        log,
        "--model_name",
        model_name,
        "--model_base_path",
        str(base_path),
        *extra,
        prefix=prefix,
    )


def start_serve(
    log: Path,
    *args: str,
    prefix: Sequence[str] = (),
    ready: str = GRPC_READY,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> RunningProcess:
    """A real `pyserving serve ARGS` on free loopback ports, returned once its output matches
    `ready` (by default its gRPC line, whose port is `match.group(1)`)."""
    return start_process(
        # ARGS come last so that a test's own --port or --rest_api_port wins.
        # No drain by default: a test that stops a server need not wait for load balancers.
        [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--rest_api_port",
            "0",
            "--drain_seconds",
            "0",
            *args,
        ],
        ready,
        log,
        timeout,
        env,
        prefix=prefix,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that cannot report theirs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid`, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def schemathesis(openapi_url: str) -> subprocess.CompletedProcess[str]:
    """Fuzz every operation of the OpenAPI document at `openapi_url` (10 examples each),
    checking that none is answered with a server error."""
    program = Path(__file__).parent.parent / ".venv" / "bin" / "schemathesis"
    checks = ["--checks", "not_a_server_error", "--max-examples", "10", "--no-color"]
    return subprocess.run(
        [str(program), "run", openapi_url, *checks],
        capture_output=True,
        text=True,
        timeout=300,
    )
