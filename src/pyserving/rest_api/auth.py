"""Bearer tokens on REST: ASGI middleware that answers 401 to unauthenticated requests.

Liveness and readiness stay open for probes, and `/metrics` unless asked otherwise.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pyserving.core.auth import REFUSED, Tokens

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
METRICS_PATH = "/metrics"


class RequireToken:
    """ASGI middleware: 401 unless the `authorization` header carries an accepted token."""

    def __init__(self, app: ASGIApp, tokens: Tokens, metrics_open: bool = True) -> None:
        self._app = app
        self._tokens = tokens
        self._open = OPEN_PATHS | ({METRICS_PATH} if metrics_open else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self._open:
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not self._tokens.accepts(given.decode("latin-1")):
                response = JSONResponse(
                    {"error": REFUSED}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
