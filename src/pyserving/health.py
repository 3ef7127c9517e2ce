"""gRPC health (`grpc.health.v1`): SERVING while models are available, for probes and LBs.

Service `""` is the whole server (its default model is available); each model name is
reported on its own. Everything turns NOT_SERVING at once when shutdown begins.
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from pyserving.manager import ModelManager

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Keeps a health servicer in step with the manager. Runs on the event loop."""

    def __init__(self, manager: ModelManager) -> None:
        self.servicer = HealthServicer()
        self._manager = manager
        self._known: set[str] = set()
        self._stopping = False

    async def follow(self) -> None:
        """Update the statuses now and after every change of the manager's state; forever."""
        while not self._stopping:
            changed = self._manager.changed
            await self.update()
            await changed.wait()

    async def update(self) -> None:
        if self._stopping:
            return
        manager = self._manager
        await self.servicer.set("", SERVING if manager.is_available() else NOT_SERVING)
        names = set(manager.model_names())
        for name in sorted(names | self._known):
            await self.servicer.set(name, SERVING if manager.is_available(name) else NOT_SERVING)
        self._known |= names

    async def shutdown(self) -> None:
        """Report NOT_SERVING for everything, and keep it so."""
        self._stopping = True
        await self.servicer.enter_graceful_shutdown()
