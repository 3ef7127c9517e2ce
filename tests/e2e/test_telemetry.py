"""Nothing leaves the machine: a served model's whole life under strace, and the entry points.

ONNX Runtime 1.29+ sends telemetry on Linux unless ORT_DISABLE_TELEMETRY=1 is set before it
loads; pyserving sets it on import unless the user chose a value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from tests.processes import free_port, start_server, wait_for

# connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.1")}, 16)
# sendto(5, ..., {sa_family=AF_INET6, sin6_port=htons(443), inet_pton(AF_INET6, "::1", ...
_ADDRESS = re.compile(
    r'sa_family=AF_INET6?,.*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")'
)
TELEMETRY_SWITCHES = ("ORT_DISABLE_TELEMETRY", "CI", "TF_BUILD", "JENKINS_URL")
STRACE = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg"]


def outside_addresses(trace: str) -> list[str]:
    """Every IP address in `trace` (strace output) that is not on this machine's loopback."""
    found = []
    for line in trace.splitlines():
        match = _ADDRESS.search(line)
        if match:
            address = match.group(1) or match.group(2)
            if not ipaddress.ip_address(address).is_loopback:
                found.append(address)
    return found


def test_the_trace_parser_finds_outside_addresses() -> None:
    trace = "\n".join(
        [
            '12 connect(3, {sa_family=AF_INET, sin_port=htons(9999), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',  # noqa: E501
            '13 connect(7, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0',  # noqa: E501
            '14 sendto(8, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = 1',  # noqa: E501
            '15 connect(9, {sa_family=AF_INET6, sin6_port=htons(1), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',  # noqa: E501
            '16 connect(4, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1',
        ]
    )
    assert outside_addresses(trace) == ["10.255.255.53", "2001:db8::1"]


@pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (make test installs it)"
)
def test_serving_makes_no_connection_outside_loopback(
    imagenet_repository: Path, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    trace = tmp_path / "strace.txt"
    # As a user runs it: nothing set that turns telemetry off (OpenVINO's is off where CI=true).
    saved = {k: os.environ.pop(k) for k in TELEMETRY_SWITCHES if k in os.environ}
    try:
        server = start_server(
            "imagenet",
            imagenet_repository / "imagenet",
            tmp_path / "server.log",
            "--rest_api_port",
            str(free_port()),
            prefix=[*STRACE, "-o", str(trace)],
        )
    finally:
        os.environ.update(saved)
    try:
        rest = re.search(r"REST listening on (http://[^\s]+)", server.output())
        assert rest, server.output()
        with grpc.insecure_channel(f"127.0.0.1:{server.match.group(1)}") as channel:
            stub = pb_grpc.ClassificationServiceStub(channel)
            reply = stub.classify(pb.ClassificationRequest(input=chelsea_jpeg), timeout=30)
        assert reply.classes[0].index == 285
        answer = httpx.post(
            f"{rest.group(1)}/v1/models/imagenet:classify",
            content=chelsea_jpeg,
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{rest.group(1)}/metrics", timeout=10).status_code == 200
    finally:
        # SIGTERM to strace would only detach it: stop the server itself, then strace ends.
        (child,) = (
            Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
            .read_text()
            .split()
        )
        os.kill(int(child), signal.SIGTERM)
        assert server.process.wait(30) == 0, server.output()
    assert wait_for(lambda: "stopped" in server.output(), 5, "the server's last line")
    text = trace.read_text()
    assert "sendto(" in text  # the trace saw the process's own calls
    assert outside_addresses(text) == []


def imported_value(setting: str | None, module: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    if setting is not None:
        env["ORT_DISABLE_TELEMETRY"] = setting
    code = (
        f"import {module}, os, sys; "
        "assert 'onnxruntime' not in sys.modules or os.environ.get('ORT_DISABLE_TELEMETRY'); "
        "print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.parametrize("module", ["pyserving", "pyserving.cli.main", "pyserving.core.servable"])
def test_every_entry_point_turns_telemetry_off_unless_the_user_chose(module: str) -> None:
    assert imported_value(None, module) == "1"
    assert imported_value("0", module) == "0"


def test_python_dash_m_sets_it_before_onnxruntime_loads() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    code = (
        "import runpy, sys, os\n"
        "sys.argv = ['pyserving', '--help']\n"
        "try:\n    runpy.run_module('pyserving', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(os.environ['ORT_DISABLE_TELEMETRY'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "1"
