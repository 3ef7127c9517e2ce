"""`pyserving serve` on a port that is taken: one line, exit 1, before any model loads."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.onnx_models import publish, write_image_servable


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("flag", "other", "what"),
    [("--port", "--rest_api_port", "gRPC"), ("--rest_api_port", "--port", "REST")],
)
def test_a_taken_port_is_one_line_before_loading(
    tmp_path: Path, taken_port: int, flag: str, other: str, what: str
) -> None:
    publish(tmp_path / "colours", 1, write_image_servable)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pyserving", "serve", "--host", "127.0.0.1"),
            *("--model_name", "colours", "--model_base_path", str(tmp_path / "colours")),
            *(flag, str(taken_port), other, "0"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"error: cannot listen on 127.0.0.1:{taken_port} for {what}: address already in use; "
        f"stop what holds it or choose another {flag}"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert "runs on engine" not in result.stderr  # nothing was loaded
