"""`make run`: the demo binds loopback only and prints its URL once both processes answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
URL_LINE = "Open http://127.0.0.1:"


def make_run(models: Path, grpc_port: int, rest_port: int, web_port: int) -> subprocess.Popen[str]:
    """`make run` on the given ports, without reinstalling (the test run has installed)."""
    return subprocess.Popen(
        [
            *("make", "-s", "run", "-o", ".venv/.run-installed", f"MODELS={models}"),
            *(f"GRPC_PORT={grpc_port}", f"REST_PORT={rest_port}", f"WEB_PORT={web_port}"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, so the test can stop all of it
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def ports() -> Iterator[tuple[int, int, int]]:
    yield free_port(), free_port(), free_port()


def test_make_run_serves_on_loopback_and_prints_the_url_once_both_answer(
    imagenet_repository: Path, ports: tuple[int, int, int]
) -> None:
    grpc_port, rest_port, web_port = ports
    process = make_run(imagenet_repository, grpc_port, rest_port, web_port)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        lines: list[str] = []
        while time.monotonic() < deadline and not any(URL_LINE in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert any(f"{URL_LINE}{web_port}" in line for line in lines), lines
        # Printed only once both answer: nothing to wait for now.
        assert httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=5).status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="imagenet"), timeout=5
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        # 127.0.0.1 as /proc writes it: IPv4, or IPv4-mapped IPv6 (gRPC's sockets).
        loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
        for port in ports:
            assert listening(port) and listening(port) <= loopback, (port, listening(port))
    finally:
        stop(process)


def test_make_run_with_the_web_port_taken_prints_no_url(
    imagenet_repository: Path, ports: tuple[int, int, int]
) -> None:
    grpc_port, rest_port, web_port = ports
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", web_port))
        holder.listen()
        process = make_run(imagenet_repository, grpc_port, rest_port, web_port)
        try:
            out, err = process.communicate(timeout=120)
        finally:
            stop(process)
    assert process.returncode != 0
    assert URL_LINE not in out
    assert f"error: cannot listen on 127.0.0.1:{web_port}" in err
    assert "Traceback" not in err
    # The trap stopped the server too: its port is free again.
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", grpc_port))
