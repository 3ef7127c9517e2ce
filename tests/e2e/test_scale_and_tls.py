"""Several replicas behind one client (round robin, failover) and TLS on both ports."""

from __future__ import annotations

import signal
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pyserving.client import Client, ClientTLS
from pyserving.errors import RemoteError
from tests.onnx_models import publish, write_version_servable
from tests.processes import RunningProcess, free_port, start_server, wait_for
from tests.scrape import metric_sum, scrape


def served(rest: str) -> float:
    """How many classify calls this replica answered, from its own /metrics."""
    return metric_sum(scrape(rest), "pyserving_requests_total", api="grpc_classify", code="OK")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[tuple[RunningProcess, str, str]]]:
    base = tmp_path / "versions"
    publish(base, 1, lambda f: write_version_servable(f, 1))
    started = []
    for i in range(2):
        port = free_port()
        server = start_server(
            "versions", base, tmp_path / f"replica{i}.log", "--rest_api_port", str(port)
        )
        started.append((server, f"127.0.0.1:{server.match.group(1)}", f"http://127.0.0.1:{port}"))
    yield started
    for server, _, _ in started:
        server.stop(signal.SIGKILL)


def test_round_robin_reaches_every_replica(replicas: list[tuple[RunningProcess, str, str]]) -> None:
    addresses = ",".join(address for _, address, _ in replicas)
    with Client(addresses, timeout=10) as client:
        for _ in range(40):
            assert client.classify(features={"x": 1.0}).predictions[0].name == "v1"
    counts = [served(rest) for _, _, rest in replicas]
    assert sum(counts) == 40
    assert all(c >= 10 for c in counts), counts  # round robin, not pick-first


def test_failover_when_a_replica_dies(
    replicas: list[tuple[RunningProcess, str, str]], tmp_path: Path
) -> None:
    addresses = ",".join(address for _, address, _ in replicas)
    ok: list[int] = []
    failed: list[str] = []
    killed = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        with Client(addresses, timeout=10) as client:
            for i in range(150):
                if i == 40 and not killed.is_set():
                    with lock:
                        if not killed.is_set():
                            replicas[0][0].process.kill()  # no goodbye: SIGKILL
                            killed.set()
                try:
                    client.classify(features={"x": 1.0})
                    ok.append(1)
                except RemoteError as exc:
                    failed.append(f"{exc.grpc_code}: {exc}")

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(worker) for _ in range(4)]:
            future.result(120)
    assert killed.is_set()
    # At most the calls in flight on the dead replica (one per worker) may fail.
    assert len(failed) <= 4, failed
    assert len(ok) + len(failed) == 600
    (tmp_path.parent / "failover-results.txt").write_text(
        f"failed during failover: {len(failed)}\n"
    )
    print(f"failover: {len(ok)} ok, {len(failed)} failed of 600")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, ext in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ]:
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.pem"),
        )
    return d


def trust(certs: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


def _tls_server(tmp_path: Path, certs: Path, *extra: str) -> tuple[RunningProcess, str, str]:
    base = tmp_path / "versions"
    publish(base, 1, lambda f: write_version_servable(f, 1))
    port = free_port()
    server = start_server(
        "versions",
        base,
        tmp_path / "server.log",
        "--rest_api_port",
        str(port),
        "--ssl_cert",
        str(certs / "server.pem"),
        "--ssl_key",
        str(certs / "server.key"),
        *extra,
    )
    return server, f"127.0.0.1:{server.match.group(1)}", f"https://127.0.0.1:{port}"


def test_tls_on_grpc_and_rest(tmp_path: Path, certificates: Path) -> None:
    server, address, rest = _tls_server(tmp_path, certificates)
    try:
        with Client(address, timeout=10, tls=ClientTLS(certificates / "ca.pem")) as client:
            assert client.classify(features={"x": 1.0}).model_version == 1
        with Client(address, timeout=5) as plain, pytest.raises(RemoteError) as info:
            plain.classify(features={"x": 1.0})
        assert info.value.grpc_code == "UNAVAILABLE"
        assert httpx.get(f"{rest}/v2/health/ready", verify=trust(certificates)).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{rest}/v2/health/ready")  # not trusted without the CA
    finally:
        assert server.stop() == 0


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, certificates: Path) -> None:
    server, address, rest = _tls_server(
        tmp_path, certificates, "--ssl_client_ca", str(certificates / "ca.pem")
    )
    try:
        mtls = ClientTLS(
            certificates / "ca.pem", certificates / "client.pem", certificates / "client.key"
        )
        with Client(address, timeout=10, tls=mtls) as client:
            assert client.classify(features={"x": 1.0}).model_version == 1
        anonymous = Client(address, timeout=5, tls=ClientTLS(certificates / "ca.pem"))
        with anonymous, pytest.raises(RemoteError):
            anonymous.classify(features={"x": 1.0})
        with_cert = trust(certificates)
        with_cert.load_cert_chain(certificates / "client.pem", certificates / "client.key")
        assert httpx.get(f"{rest}/v2/health/live", verify=with_cert).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{rest}/v2/health/live", verify=trust(certificates))
    finally:
        assert server.stop() == 0


def test_cli_classify_over_tls(tmp_path: Path, certificates: Path, chelsea_jpeg: bytes) -> None:
    import sys

    server, address, _ = _tls_server(tmp_path, certificates)
    try:
        wait_for(lambda: server.process.poll() is None, 5, "server up")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pyserving",
                "status",
                "--server",
                address,
                "--ca_file",
                str(certificates / "ca.pem"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "AVAILABLE" in out.stdout
    finally:
        server.stop()
