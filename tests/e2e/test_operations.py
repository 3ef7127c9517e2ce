"""Operations over gRPC: health (overall and per model), reflection, graceful shutdown."""

from __future__ import annotations

import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pyserving.client import Client
from pyserving.errors import RemoteError
from tests.onnx_models import publish, write_version_servable
from tests.processes import run_cli, start_server, wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_health_for_the_server_and_each_model(server_address: str) -> None:
    assert check(server_address, "") == SERVING
    assert check(server_address, "imagenet") == SERVING
    with pytest.raises(grpc.RpcError) as info:
        check(server_address, "no-such-model")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == (
        "no model 'no-such-model' here; health is reported for the server ('') and for "
        "each model: 'imagenet'"
    )


def test_health_of_an_unknown_model_names_the_known_ones(server_address: str) -> None:
    result = run_cli("health", "--server", server_address, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING")
    result = run_cli("health", "--server", server_address, "--service", "nosuch", timeout=60)
    assert result.returncode == 1
    assert (
        (result.stdout + result.stderr)
        .strip()
        .endswith(
            "no model 'nosuch' here; health is reported for the server ('') and for each "
            "model: 'imagenet'"
        )
    )
    assert "Traceback" not in result.stderr


def test_reflection_lists_the_services(server_address: str) -> None:
    with grpc.insecure_channel(server_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {
        "ClassificationService",
        "inference.GRPCInferenceService",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
    } <= names


def test_model_health_follows_its_versions(tmp_path: Path) -> None:
    base = tmp_path / "versions"
    publish(base, 1, lambda f: write_version_servable(f, 1))
    server = start_server(
        "versions", base, tmp_path / "server.log", "--file_system_poll_wait_seconds", "0.1"
    )
    address = f"127.0.0.1:{server.match.group(1)}"
    try:
        assert check(address, "versions") == SERVING
        shutil.rmtree(base / "1")
        wait_for(lambda: check(address, "versions") == NOT_SERVING, 20, "NOT_SERVING")
        assert check(address, "") == NOT_SERVING
        publish(base, 2, lambda f: write_version_servable(f, 2))
        wait_for(lambda: check(address, "") == SERVING, 20, "SERVING again")
    finally:
        server.stop()


WORKERS = 16


def test_sigterm_under_load_loses_no_accepted_request(
    tmp_path: Path, imagenet_repository: Path, chelsea_jpeg: bytes
) -> None:
    server = start_server("imagenet", imagenet_repository / "imagenet", tmp_path / "server.log")
    address = f"127.0.0.1:{server.match.group(1)}"
    ok: list[int] = []
    refused: list[str] = []
    other: list[str] = []
    started = threading.Event()

    def worker() -> None:
        with Client(address, timeout=20) as client:
            for _ in range(200):
                try:
                    client.classify(chelsea_jpeg)
                    ok.append(1)
                    started.set()
                except RemoteError as exc:
                    # Once shutdown begins new calls are refused; no accepted call may fail.
                    if exc.grpc_code == "UNAVAILABLE":
                        refused.append(str(exc))
                    else:
                        other.append(f"{exc.grpc_code}: {exc}")
                    return

    # Enough clients that some calls are often queued in gRPC, not yet handed to a handler,
    # when SIGTERM comes: the server cancels those (grpc/grpc#41785) and the client retries.
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(worker) for _ in range(WORKERS)]
        assert started.wait(30)
        wait_for(lambda: len(ok) >= 20, 30, "20 answers")
        server.process.send_signal(signal.SIGTERM)
        for f in futures:
            f.result(60)
    assert server.process.wait(30) == 0
    assert other == []
    assert len(refused) == WORKERS  # every worker ended on a refused new call, not a lost one
    assert "finishing calls in flight" in server.output()
