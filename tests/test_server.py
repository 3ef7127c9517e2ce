"""The server: its REST socket, and its start, wait, drain and stop run in process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import pytest
from starlette.applications import Starlette

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.core.settings import ModelConfig, Settings
from pyserving.server import Server, _rest_server
from tests.onnx_models import png, publish, write_image_servable


def test_accepted_rest_connections_send_without_waiting_for_acks() -> None:
    settings = Settings(
        models=(ModelConfig("m", Path("unused")),), host="127.0.0.1", rest_api_port=0
    )
    _, listener = _rest_server(Starlette(), settings)
    with listener:
        # asyncio sets TCP_NODELAY itself only on sockets whose proto says TCP.
        assert listener.proto == socket.IPPROTO_TCP
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def server_settings(base: Path, **overrides: object) -> Settings:
    """One image model on a free gRPC port of loopback, no REST, no drain."""
    values: dict[str, object] = {
        "models": (ModelConfig("colours", base),),
        "host": "127.0.0.1",
        "port": 0,
        "rest_api_port": 0,
        "drain_seconds": 0.0,
        "file_system_poll_wait_seconds": 0.0,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


async def classify(port: int) -> grpc.StatusCode:
    """One `classify` call of a red PNG: OK, or the status code it ended with."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ClassificationServiceStub(channel)
        try:
            await stub.classify(pb.ClassificationRequest(input=png((250, 0, 0))), timeout=30)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_start_wait_drain_stop_in_process(tmp_path: Path) -> None:
    publish(tmp_path / "colours", 1, write_image_servable)
    server = Server(server_settings(tmp_path / "colours"))
    assert await server.start()
    try:
        assert server.grpc_port > 0
        assert await classify(server.grpc_port) == grpc.StatusCode.OK
        waiting = asyncio.create_task(server.wait())
        await asyncio.sleep(0)
        assert not waiting.done()
        server.request_stop()
        await asyncio.wait_for(waiting, 10)
        await server.drain()
        # Drained: the port still answers, and refuses new calls in a way clients retry.
        assert await classify(server.grpc_port) == grpc.StatusCode.UNAVAILABLE
        await server.stop()
    finally:
        await server.close()


async def test_a_stop_asked_for_while_loading_opens_no_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No version yet: the manager waits for one, so start is still loading when stopped.
    (tmp_path / "colours").mkdir()
    server = Server(server_settings(tmp_path / "colours"))
    starting = asyncio.create_task(server.start())
    deadline = asyncio.get_running_loop().time() + 30
    while "waiting for a version of model colours" not in caplog.text:
        assert asyncio.get_running_loop().time() < deadline, caplog.text
        await asyncio.sleep(0.01)
    server.request_stop()
    assert await asyncio.wait_for(starting, 10) is False
    assert server.grpc_port == 0
    await server.stop()
