"""`grpc.health.v1` in process: statuses follow the service's health, then all stop."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyserving.core.service import Service
from pyserving.grpc_api.health import HealthReporter


async def test_health_follows_the_models_then_shuts_down(service: Service) -> None:
    reporter = HealthReporter(service)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(reporter.servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    following = asyncio.create_task(reporter.follow())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def status(name: str) -> int:
                request = health_pb2.HealthCheckRequest(service=name)
                return int((await stub.Check(request, timeout=5)).status)

            serving = health_pb2.HealthCheckResponse.SERVING
            for _ in range(100):  # the first update runs as soon as the task starts
                if await status("lin") == serving:
                    break
                await asyncio.sleep(0.01)
            assert await status("") == serving and await status("colours") == serving
            await reporter.shutdown()
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status("") == not_serving and await status("lin") == not_serving
    finally:
        following.cancel()
        await server.stop(None)
