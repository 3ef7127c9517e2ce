"""Request bodies: read with a size limit, parsed off the event loop when large, and the
JSON and base64 parsing every REST adapter shares."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from pyserving.errors import InvalidInput, RequestTooLarge

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
