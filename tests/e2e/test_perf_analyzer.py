"""Triton's perf_analyzer against the server: it needs the model-configuration extension.

The `perf-analyzer` wheel (2.60) needs glibc 2.38 or newer; `make test` installs it into
.venv-clients only where the C library is new enough (Debian 13, not Debian 12).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.processes import RunningProcess

ROOT = Path(__file__).parent.parent.parent
PERF_ANALYZER = ROOT / ".venv-clients" / "bin" / "perf_analyzer"
NEEDED_GLIBC = (2, 38)


def glibc() -> tuple[int, int]:
    """This machine's C library version, (0, 0) when it is not glibc."""
    name = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    if not name or not name.startswith("glibc "):
        return (0, 0)
    major, minor = name.split()[1].split(".")[:2]
    return int(major), int(minor)


pytestmark = pytest.mark.skipif(
    glibc() < NEEDED_GLIBC,
    reason=f"perf_analyzer 2.60 needs glibc >= 2.38; this machine has "
    f"{'.'.join(map(str, glibc()))}",
)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_measures_the_model(
    imagenet_server: RunningProcess, chelsea_jpeg: bytes, tmp_path: Path, protocol: str
) -> None:
    assert PERF_ANALYZER.exists(), "run `make test` (it installs perf-analyzer into .venv-clients)"
    import httpx

    log = imagenet_server.output()
    grpc_address = f"127.0.0.1:{imagenet_server.match.group(1)}"
    rest_port = next(
        line.rsplit(":", 1)[1] for line in log.splitlines() if "REST listening on" in line
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{rest_port}") as http:
        name = http.get("/v2/models/imagenet").json()["inputs"][0]["name"]
    data = tmp_path / "input.json"
    image = base64.b64encode(chelsea_jpeg).decode()
    data.write_text(json.dumps({"data": [{name: {"b64": image}}]}))
    url = grpc_address if protocol == "grpc" else f"127.0.0.1:{rest_port}"
    out = subprocess.run(
        [
            str(PERF_ANALYZER),
            "-m",
            "imagenet",
            "-u",
            url,
            "-i",
            protocol,
            "--input-data",
            str(data),
            "--concurrency-range",
            "1",
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "failed to get model config" not in out.stdout + out.stderr
    assert "Throughput" in out.stdout
