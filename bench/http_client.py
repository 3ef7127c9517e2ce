"""A keep-alive HTTP/1.1 client that costs the load generator as little CPU as it can.

The client shares the cores with the server it measures, so it does no more than sending
needs: one prepared request (head and body in one buffer) written to a connection kept open
between requests, and a response read by its Content-Length. Each request in flight takes
an idle connection (or opens one), so a closed loop of N workers holds N connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


class HttpError(Exception):
    """A request that got no 200: `code` is "HTTP 503", or why the connection failed."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class KeepAliveClient:
    """POSTs of one body to one URL on 127.0.0.1, over connections reused between requests."""

    def __init__(self, address: str, path: str, body: bytes, content_type: str) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._request = head.encode("latin-1") + body
        self._idle: list[_Connection] = []

    async def post(self) -> bytes:
        """Send the request; the response body of a 200, else HttpError."""
        try:
            connection = self._idle.pop() if self._idle else await self._connect()
        except OSError as exc:
            raise HttpError(f"connect: {type(exc).__name__}") from exc
        try:
            # No drain(): one request per connection is in flight, and its answer comes only
            # after the transport has sent all of it.
            connection.writer.write(self._request)
            status, keep_alive, body = await _response(connection.reader)
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as exc:
            connection.writer.close()
            raise HttpError(f"connection: {type(exc).__name__}") from exc
        if keep_alive:
            self._idle.append(connection)
        else:
            connection.writer.close()
        if status != 200:
            raise HttpError(f"HTTP {status}")
        return body

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.writer.close()
        for connection in idle:
            with contextlib.suppress(OSError):  # the server may have closed it first
                await connection.writer.wait_closed()

    async def __aenter__(self) -> KeepAliveClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Status, whether the connection stays open, and the body of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    keep_alive = True
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep_alive = value.strip().lower() != b"close"
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not supported")
    if length is None:
        raise ValueError("response without Content-Length")
    return status, keep_alive, await reader.readexactly(length)
