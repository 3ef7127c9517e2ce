"""Bearer tokens on gRPC: a server interceptor that ends unauthenticated calls.

Health and the v2 protocol's server liveness and readiness stay open, for probes and load
balancers. Every other method needs `authorization: Bearer <token>` metadata; without it
the call ends UNAUTHENTICATED, saying nothing of what was wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from pyserving.core.auth import REFUSED, Tokens

OPEN_SERVICES = frozenset({health_pb2.DESCRIPTOR.services_by_name["Health"].full_name})
OPEN_METHODS = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through when its `authorization` metadata carries an accepted token."""

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method in OPEN_METHODS or method.split("/")[1] in OPEN_SERVICES:
            return handler
        metadata = handler_call_details.invocation_metadata or ()  # type: ignore[attr-defined]
        given = next((str(v) for k, v in metadata if k == "authorization"), None)
        if self._tokens.accepts(given):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that ends the call UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSED)

    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **options)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **options)
    return grpc.stream_stream_rpc_method_handler(refuse, **options)
