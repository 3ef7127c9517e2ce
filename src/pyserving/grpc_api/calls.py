"""What every gRPC call needs: its deadline, and domain errors mapped to status codes."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from pyserving.errors import PyservingError


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline in event-loop time, or None when the client set none."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + float(remaining)


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def maps_errors(handler: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
    """End the call with the status a PyservingError carries: the one place gRPC maps them."""

    @functools.wraps(handler)
    async def call(self: S, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await handler(self, request, context)
        except PyservingError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], str(exc))
            raise  # unreachable: abort raises

    return call
