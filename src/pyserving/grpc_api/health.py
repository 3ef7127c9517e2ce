"""gRPC health (`grpc.health.v1`): SERVING while models are available, for probes and LBs.

Service `""` is the whole server (its default model is available); each model name is
reported on its own. Everything turns NOT_SERVING at once when shutdown begins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from pyserving.core.service import Service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Servicer(HealthServicer):
    """grpc_health's servicer, whose NOT_FOUND says which services it does know."""

    def __init__(self, known: Callable[[], set[str]]) -> None:
        super().__init__()
        self._known_names = known

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> Any:
        known = self._known_names()
        if request.service and request.service not in known:
            models = ", ".join(repr(n) for n in sorted(known)) or "none yet"
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no model {request.service!r} here; health is reported for the server "
                f"('') and for each model: {models}",
            )
        return await super().Check(request, context)


class HealthReporter:
    """Keeps a health servicer in step with the models' states. Runs on the event loop."""

    def __init__(self, service: Service) -> None:
        self.servicer = _Servicer(lambda: set(self._known))
        self._service = service
        self._known: set[str] = set()
        self._stopping = False

    async def follow(self) -> None:
        """Update the statuses now and after every change of a model's state; forever."""
        while not self._stopping:
            changed = self._service.changed
            await self.update()
            await changed.wait()

    async def update(self) -> None:
        """Set every status from the service's current health."""
        if self._stopping:
            return
        health = self._service.health()
        await self.servicer.set("", SERVING if health.server else NOT_SERVING)
        for name in sorted(set(health.models) | self._known):
            serving = health.models.get(name, False)
            await self.servicer.set(name, SERVING if serving else NOT_SERVING)
        self._known |= set(health.models)

    async def shutdown(self) -> None:
        """Report NOT_SERVING for everything, and keep it so."""
        self._stopping = True
        await self.servicer.enter_graceful_shutdown()
