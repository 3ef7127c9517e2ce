"""The model server process: one event loop, one thread pool, the gRPC port."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.grpc_api import ClassificationApi
from pyserving.health import HealthReporter
from pyserving.manager import ModelManager
from pyserving.service import Service
from pyserving.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["ClassificationService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel options: the request size limit is enforced by gRPC itself."""
    return [
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.max_send_message_length", settings.max_request_bytes),
        ("grpc.so_reuseport", 0),
    ]


async def serve(settings: Settings) -> None:
    """Load the models, serve until SIGINT or SIGTERM, then stop cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    executor = ThreadPoolExecutor(settings.pool_size, thread_name_prefix="pyserving")
    try:
        manager = ModelManager(settings, executor)
        if not await _until_stopped(manager.start(), stop):
            await manager.stop()
            return
        service = Service(manager, executor, settings)

        health = HealthReporter(manager)
        following = asyncio.create_task(health.follow())

        server = grpc.aio.server(options=grpc_options(settings))
        pb_grpc.add_ClassificationServiceServicer_to_server(ClassificationApi(service), server)
        health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
        reflection.enable_server_reflection(SERVICE_NAMES, server)
        address = f"{settings.host}:{settings.port}"
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen on {address} for gRPC (port in use?)")
        await server.start()
        log.info(
            "serving models %s (default %s); gRPC listening on %s:%d",
            ", ".join(manager.model_names()),
            manager.default_model,
            settings.host,
            port,
        )
        await stop.wait()
        await health.shutdown()
        following.cancel()
        log.info(
            "shutting down: finishing calls in flight (up to %.0f s)",
            settings.shutdown_grace_seconds,
        )
        await server.stop(settings.shutdown_grace_seconds)
        await manager.stop()
        log.info("stopped")
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `work` unless `stop` is set first; True if it finished (its errors propagate)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True
