"""Which failures `pyserving.client` retries, against a real gRPC server on loopback.

The server here is scripted (it answers each attempt with a chosen status) because the
statuses it stands in for come from races: a server that shuts down cancels calls it had
received but not yet handed to a handler (grpc/grpc#41785).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.client import Client
from pyserving.errors import RemoteError


class ScriptedService:
    """Fails the first attempts with the scripted codes, then answers one class."""

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.attempts = 0

    def classify(
        self, request: pb.ClassificationRequest, context: grpc.ServicerContext
    ) -> pb.ClassificationResponse:
        self.attempts += 1
        if self.failures:
            context.abort(self.failures.pop(0), "scripted failure")
        return pb.ClassificationResponse(classes=[pb.ClassificationClass(name="cat", score=1.0)])

    def get_model_status(
        self, request: pb.ModelStatusRequest, context: grpc.ServicerContext
    ) -> pb.ModelStatusResponse:
        return pb.ModelStatusResponse()

    def explain(self, request: pb.ExplainRequest, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedService, str]]:
    service = ScriptedService()
    server = grpc.server(ThreadPoolExecutor(2))
    pb_grpc.add_ClassificationServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield service, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
def test_a_call_the_server_dropped_is_retried(
    scripted: tuple[ScriptedService, str], code: grpc.StatusCode
) -> None:
    service, address = scripted
    service.failures = [code, code]
    with Client(address, timeout=10) as client:
        result = client.classify(b"jpeg")
    assert result.predictions[0].name == "cat"
    assert service.attempts == 3


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED]
)
def test_a_call_the_server_refused_on_its_merits_is_not_retried(
    scripted: tuple[ScriptedService, str], code: grpc.StatusCode
) -> None:
    service, address = scripted
    service.failures = [code]
    with Client(address, timeout=10) as client, pytest.raises(RemoteError) as info:
        client.classify(b"jpeg")
    assert info.value.grpc_code == code.name
    assert service.attempts == 1


def test_retries_stop_after_four_attempts(scripted: tuple[ScriptedService, str]) -> None:
    service, address = scripted
    service.failures = [grpc.StatusCode.CANCELLED] * 5
    with Client(address, timeout=10) as client, pytest.raises(RemoteError) as info:
        client.classify(b"jpeg")
    assert info.value.grpc_code == "CANCELLED"
    assert service.attempts == 4
