"""Triton's perf_analyzer against the server, over gRPC and HTTP, with a real JPEG.

It reads the model configuration (`max_batch_size` 4, input dims [1]) and the v2 metadata
(input shape [-1, 1]) and needs the two to agree, as they do on Triton's own servers.
`make test` installs the `perf-analyzer` wheel (2.60) into .venv-clients/perf-analyzer.
It needs glibc 2.38; where this machine's is older, it runs through Debian 13's C library,
fetched and unpacked privately (tests/clients/newer_glibc.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients import newer_glibc
from tests.processes import free_port, start_server

ROOT = Path(__file__).parent.parent.parent
CLIENTS = ROOT / ".venv-clients"
PERF_ANALYZER = CLIENTS / "perf-analyzer" / "perf_analyzer" / "bin" / "perf_analyzer"
NEEDED_GLIBC = (2, 38)
THROUGHPUT = re.compile(r"Concurrency: 4, throughput: ([\d.]+) infer/sec, latency (\d+) usec")


def glibc() -> tuple[int, int]:
    """This machine's C library version, (0, 0) when it is not glibc."""
    name = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    if not name or not name.startswith("glibc "):
        return (0, 0)
    major, minor = name.split()[1].split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(scope="module")
def perf_analyzer() -> list[str]:
    """The command that runs perf_analyzer here, through a newer C library if need be."""
    assert PERF_ANALYZER.exists(), "run `make test`: it installs perf-analyzer into .venv-clients"
    if glibc() >= NEEDED_GLIBC:
        return [str(PERF_ANALYZER)]
    try:
        libraries = newer_glibc.library_folder(CLIENTS / "glibc")
    except newer_glibc.Unavailable as exc:
        pytest.skip(f"perf_analyzer needs glibc >= 2.38, this machine has {glibc()}: {exc}")
    return newer_glibc.command(PERF_ANALYZER, libraries)


@pytest.fixture(scope="module")
def server(
    imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """The exported model served on gRPC and REST: the gRPC address and the REST port."""
    rest_port = free_port()
    log = tmp_path_factory.mktemp("perf") / "server.log"
    process = start_server(
        "imagenet", imagenet_repository / "imagenet", log, "--rest_api_port", str(rest_port)
    )
    yield f"127.0.0.1:{process.match.group(1)}", rest_port
    process.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_measures_the_model(
    server: tuple[str, int],
    perf_analyzer: list[str],
    chelsea_jpeg: bytes,
    tmp_path: Path,
    protocol: str,
) -> None:
    grpc_address, rest_port = server
    with httpx.Client(base_url=f"http://127.0.0.1:{rest_port}") as http:
        (image_input,) = http.get("/v2/models/imagenet").json()["inputs"]
        config = http.get("/v2/models/imagenet/config").json()
    assert image_input["shape"] == [-1, *config["input"][0]["dims"]] == [-1, 1]
    # `b64` is the tensor's raw content: for BYTES, each element length-prefixed.
    content = struct.pack("<I", len(chelsea_jpeg)) + chelsea_jpeg
    data = tmp_path / "input.json"
    b64 = base64.b64encode(content).decode()
    data.write_text(json.dumps({"data": [{image_input["name"]: {"b64": b64}}]}))
    url = grpc_address if protocol == "grpc" else f"127.0.0.1:{rest_port}"
    out = subprocess.run(
        [
            *perf_analyzer,
            *("-m", "imagenet", "-u", url, "-i", protocol, "--input-data", str(data)),
            *("--concurrency-range", "4", "--measurement-mode", "count_windows"),
            *("--measurement-request-count", "50"),
            # A test checks that it runs, not how steady this machine is: any three
            # windows count as stable (perf_analyzer's default wants them within 10%).
            *("--stability-percentage", "1000"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    found = THROUGHPUT.search(out.stdout)
    assert found, out.stdout[-2000:]
    assert float(found.group(1)) > 0
    assert "error" not in (out.stdout + out.stderr).lower(), out.stdout[-2000:]
    print(f"perf_analyzer over {protocol}, concurrency 4: {found.group(0)}")
