"""What one client can make the server hold: headers, bodies, connections, streams, idling."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from tests.onnx_models import png, publish, write_image_servable
from tests.processes import RunningProcess, free_port, run_cli, start_server, wait_for

RED = png((220, 10, 10))
MAX_CONNECTIONS = 3
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A server with small limits: its gRPC address and REST port."""
    folder = tmp_path_factory.mktemp("limits")
    publish(folder / "colours", 1, write_image_servable)
    port = free_port()
    server: RunningProcess = start_server(
        "colours",
        folder / "colours",
        folder / "server.log",
        "--rest_api_port",
        str(port),
        "--max_request_mib",
        "0.0625",  # 64 KiB
        "--max_header_kib",
        "4",
        "--max_headers",
        "20",
        "--max_connections",
        str(MAX_CONNECTIONS),
        "--max_concurrent_streams",
        "7",
        "--idle_timeout_seconds",
        "1",
    )
    yield f"127.0.0.1:{server.match.group(1)}", port
    assert server.stop() == 0, server.output()


def own_connection(address: str) -> grpc.Channel:
    """A channel with its own TCP connection (channels in a process share them otherwise)."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def classify(channel: grpc.Channel, **options: object) -> str:
    stub = pb_grpc.ClassificationServiceStub(channel)
    reply = stub.classify(pb.ClassificationRequest(input=RED), timeout=5, **options)
    return str(reply.classes[0].name)


def test_rest_headers_over_the_limits_are_431(limited: tuple[str, int]) -> None:
    url = f"http://127.0.0.1:{limited[1]}/v2/health/live"
    assert httpx.get(url).status_code == 200
    big = httpx.get(url, headers={"x-big": "a" * 5000})
    assert big.status_code == 431
    assert "bytes of headers, over the limit of 4,096" in big.json()["error"]
    many = httpx.get(url, headers={f"x-{i}": "1" for i in range(25)})
    assert many.status_code == 431
    assert "headers, over the limit of 20" in many.json()["error"]


def test_a_chunked_body_over_the_limit_is_413(limited: tuple[str, int]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024  # 100 KiB in all, with no Content-Length

    answer = httpx.post(
        f"http://127.0.0.1:{limited[1]}/v1/models/colours:classify",
        content=chunks(),
        headers={"Content-Type": "image/png"},
    )
    assert answer.status_code == 413
    assert "over the limit of 65,536 bytes" in answer.json()["error"]


def _get(sock: socket.socket) -> bytes:
    """One keep-alive GET on `sock`: the whole response, read by its Content-Length."""
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(65536)
    head, body = response.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return response


def test_rest_connections_over_the_limit_get_503(limited: tuple[str, int]) -> None:
    address = ("127.0.0.1", limited[1])
    held = [socket.create_connection(address, timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        assert all(_get(s).startswith(b"HTTP/1.1 200") for s in held)
        with socket.create_connection(address, timeout=5) as extra:
            assert _get(extra).startswith(b"HTTP/1.1 503")
    finally:
        for s in held:
            s.close()


def test_an_idle_rest_connection_is_closed(limited: tuple[str, int]) -> None:
    with socket.create_connection(("127.0.0.1", limited[1]), timeout=10) as sock:
        assert _get(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server
        assert 0.5 < time.monotonic() - started < 8


def test_grpc_connections_over_the_limit_are_refused(limited: tuple[str, int]) -> None:
    address = limited[0]
    held = [own_connection(address) for _ in range(MAX_CONNECTIONS)]
    try:
        assert [classify(c) for c in held] == ["red"] * MAX_CONNECTIONS
        with own_connection(address) as extra:
            with pytest.raises(grpc.RpcError) as info:
                classify(extra)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            held.pop().close()
            wait_for(lambda: _works(extra), 10, "a call on the new connection")
    finally:
        for c in held:
            c.close()


def _works(channel: grpc.Channel) -> bool:
    try:
        return classify(channel) == "red"
    except grpc.RpcError:
        return False


def test_grpc_metadata_over_the_limit_is_refused(limited: tuple[str, int]) -> None:
    with grpc.insecure_channel(limited[0]) as channel:
        assert classify(channel, metadata=[("x-small", "a" * 100)]) == "red"
        with pytest.raises(grpc.RpcError) as info:
            classify(channel, metadata=[("x-big", "a" * 5000)])
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
        assert "metadata size exceeds" in str(info.value.details())
        assert classify(channel) == "red"  # the connection still serves


def test_grpc_announces_its_stream_limit(limited: tuple[str, int]) -> None:
    host, port = limited[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, b""))
        settings = _server_settings(sock)
    assert settings[SETTINGS_MAX_CONCURRENT_STREAMS] == 7


def test_an_idle_grpc_connection_is_closed(limited: tuple[str, int]) -> None:
    with grpc.insecure_channel(limited[0]) as channel:
        assert classify(channel) == "red"
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append)
        wait_for(
            lambda: grpc.ChannelConnectivity.IDLE in states, 10, "the server to close it (GOAWAY)"
        )
        assert classify(channel) == "red"  # a new connection, made on the next call


def _frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + b"\0\0\0\0" + payload


def _server_settings(sock: socket.socket) -> dict[int, int]:
    """The first SETTINGS frame the server sends, as {identifier: value}."""
    buffer = b""
    while True:
        while len(buffer) < 9:
            buffer += sock.recv(4096)
        length = int.from_bytes(buffer[:3], "big")
        kind, flags = buffer[3], buffer[4]
        while len(buffer) < 9 + length:
            buffer += sock.recv(4096)
        payload, buffer = buffer[9 : 9 + length], buffer[9 + length :]
        if kind == 4 and not flags & 1:
            return {
                int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(
                    payload[i + 2 : i + 6], "big"
                )
                for i in range(0, len(payload), 6)
            }


def test_a_file_over_the_grpc_limit_names_the_flag(
    limited: tuple[str, int], tmp_path: Path
) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(100 * 1024))  # 100 KiB, over the 64 KiB limit
    result = run_cli("classify", str(big), "--server", limited[0], timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{big}: error: the request is 0.0977 MiB, over the server's "
        "limit of 0.0625 MiB (its --max_request_mib); send a smaller input"
    )
