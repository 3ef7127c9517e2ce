"""The server's REST socket: what every accepted connection inherits."""

from __future__ import annotations

import socket
from pathlib import Path

from starlette.applications import Starlette

from pyserving.core.settings import ModelConfig, Settings
from pyserving.server import _rest_server


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
