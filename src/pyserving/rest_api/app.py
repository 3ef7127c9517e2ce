"""The REST port: one Starlette app with the v2, TF Serving and operations routes.

Routes are an explicit list. Every error leaves as `{"error": "..."}` with the status that
its PyservingError carries; anything unexpected is logged and becomes a 500 that says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pyserving.core import metrics
from pyserving.core.auth import Tokens
from pyserving.core.service import Service
from pyserving.errors import PyservingError
from pyserving.rest_api import openapi
from pyserving.rest_api.auth import RequireToken
from pyserving.rest_api.limits import HeaderLimits
from pyserving.rest_api.oip import V2Routes
from pyserving.rest_api.tfs import TfServingRoutes

log = logging.getLogger(__name__)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The body every REST error has: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _pyserving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PyservingError)
    return error_response(exc.http_status, str(exc), exc.http_headers or None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def create_rest_app(
    service: Service,
    max_request_bytes: int,
    max_header_bytes: int = 16 * 1024,
    max_headers: int = 100,
    tokens: Tokens | None = None,
    metrics_open: bool = True,
    metrics_path: str | None = None,
) -> Starlette:
    """The REST API on top of `service`, refusing requests whose headers are over the limits
    and, given `tokens`, those that carry none of them."""
    v2 = V2Routes(service, max_request_bytes)
    tfs = TfServingRoutes(service, max_request_bytes)

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def is_ready(request: Request) -> Response:
        ok = service.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def openapi_document(request: Request) -> Response:
        return JSONResponse(openapi.document(service.model_names()))

    routes = [
        Route("/v2", v2.server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", is_ready),
        Route("/v2/models/{name}", v2.model_metadata),
        Route("/v2/models/{name}/ready", v2.model_ready),
        Route("/v2/models/{name}/config", v2.model_config),
        Route("/v2/models/{name}/infer", v2.infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", v2.model_metadata),
        Route("/v2/models/{name}/versions/{version}/ready", v2.model_ready),
        Route("/v2/models/{name}/versions/{version}/config", v2.model_config),
        Route("/v2/models/{name}/versions/{version}/infer", v2.infer, methods=["POST"]),
        Route("/v1/models/{rest:path}", tfs.dispatch, methods=["GET", "POST"]),
        Route("/metrics", prometheus),
        Route("/openapi.json", openapi_document),
    ]
    if metrics_path and metrics_path != "/metrics":
        routes.append(Route(metrics_path, prometheus))  # TF Serving's monitoring config
    middleware = [Middleware(HeaderLimits, max_bytes=max_header_bytes, max_count=max_headers)]
    if tokens is not None:
        middleware.append(Middleware(RequireToken, tokens=tokens, metrics_open=metrics_open))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            PyservingError: _pyserving_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
