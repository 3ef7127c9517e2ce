"""The REST port: one Starlette app with the v2, TF Serving and operations routes.

Routes are an explicit list. Every error leaves as `{"error": "..."}` with the status that
its PyservingError carries; anything unexpected is logged and becomes a 500 that says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pyserving import metrics, openapi
from pyserving.errors import InvalidInput, PyservingError, RequestTooLarge
from pyserving.service import Service

log = logging.getLogger(__name__)

T = TypeVar("T")
OFF_LOOP_BYTES = 64 * 1024  # parsing a body this large takes long enough to stall other calls


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it is over `limit` bytes (checked as read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise RequestTooLarge(
                f"the request is {int(declared):,} bytes, over the limit of {limit:,}"
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(body: bytes, parse: Callable[[bytes], T]) -> T:
    """`parse(body)`: on the event loop for a small body, in a thread for a large one.

    JSON with base64 images runs to megabytes, and parsing it is CPU work that would hold
    up every other call on the loop.
    """
    if len(body) < OFF_LOOP_BYTES:
        return parse(body)
    return await asyncio.to_thread(parse, body)


def json_object(body: bytes, expected: str = "a JSON object") -> dict[str, Any]:
    """The body parsed as a JSON object, or InvalidInput saying what was `expected`."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInput(f"the request body must be {expected}")
    return doc


def b64decode(text: Any, where: str) -> bytes:
    """Bytes from a base64 string found at `where` in the body, or InvalidInput."""
    if not isinstance(text, str):
        raise InvalidInput(f"{where} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where} is not valid base64: {exc}") from exc


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The body every REST error has: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _pyserving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PyservingError)
    return error_response(exc.http_status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def create_rest_app(service: Service, max_request_bytes: int) -> Starlette:
    """The REST API on top of `service`."""
    from pyserving import tfs_http_api, v2_http_api

    v2 = v2_http_api.V2Routes(service, max_request_bytes)
    tfs = tfs_http_api.TfServingRoutes(service, max_request_bytes)

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
        Route("/v2/models/{name}/infer", v2.infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", v2.model_metadata),
        Route("/v2/models/{name}/versions/{version}/ready", v2.model_ready),
        Route("/v2/models/{name}/versions/{version}/infer", v2.infer, methods=["POST"]),
        Route("/v1/models/{rest:path}", tfs.dispatch, methods=["GET", "POST"]),
        Route("/metrics", prometheus),
        Route("/openapi.json", openapi_document),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            PyservingError: _pyserving_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
