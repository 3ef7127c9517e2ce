"""Bounds on request headers: their total size and their number, checked before routing.

h11 bounds headers that arrive in pieces (`h11_max_incomplete_event_size`), but headers
that arrive in one read are parsed whole; this middleware refuses both with 431.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class HeaderLimits:
    """ASGI middleware: 431 for a request with over `max_bytes` of headers or `max_count`."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_count: int) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(name) + len(value) + 4 for name, value in headers)  # ": ", CRLF
            problem = ""
            if len(headers) > self._max_count:
                problem = f"{len(headers)} headers, over the limit of {self._max_count}"
            elif size > self._max_bytes:
                problem = f"{size:,} bytes of headers, over the limit of {self._max_bytes:,}"
            if problem:
                # The body every REST error has; the connection goes, headers and all.
                response = JSONResponse(
                    {"error": f"the request has {problem}"},
                    status_code=431,
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
