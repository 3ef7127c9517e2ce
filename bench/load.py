"""A closed-loop load generator: N asyncio workers, each sending its next request as soon
as the previous one is answered, until a fixed count is sent or a time bound passes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import grpc

from bench.http_client import HttpError, KeepAliveClient
from bench.stats import Measurement, own_cpu_seconds, process_cpu_seconds
from pyserving.client import AsyncClient
from pyserving.errors import RemoteError

Call = Callable[[], Awaitable[Any]]
ECHO_METHOD = "/bench.Echo/echo"
FAILURES = (RemoteError, grpc.aio.AioRpcError, HttpError)  # counted as errors, never fatal


def _code(exc: BaseException) -> str:
    """The error's kind for the table: a gRPC status code, or an HTTP status."""
    if isinstance(exc, RemoteError):
        return str(exc.grpc_code)
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    return exc.code if isinstance(exc, HttpError) else type(exc).__name__


async def closed_loop(
    call: Call,
    concurrency: int,
    requests: int,
    seconds: float,
    warmup: int = 0,
    server_pid: int | None = None,
    backoff: float = 0.0,
) -> Measurement:
    """Keep `concurrency` calls in flight; count and time every one that completes.

    Stops after `requests` calls or `seconds`, whichever comes first; the `warmup` calls
    before that (made at the same concurrency) are not counted. The CPU time of this
    process and of `server_pid` is measured over the counted calls. After a failed call a
    worker waits `backoff` seconds (±50%, at random) before its next, as gRPC's retry
    backoff does; 0 retries at once.
    """
    await _spread(call, concurrency, warmup, seconds)
    issued = 0
    latencies: list[float] = []
    error_latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            started = time.perf_counter()
            try:
                await call()
            except FAILURES as exc:
                failed = time.perf_counter()
                errors[_code(exc)] += 1
                error_latencies.append(failed - started)
                if backoff:
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            else:
                latencies.append(time.perf_counter() - started)

    server_cpu = None if server_pid is None else process_cpu_seconds(server_pid)
    started, client_cpu = time.perf_counter(), own_cpu_seconds()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    client_cpu = own_cpu_seconds() - client_cpu
    if server_cpu is not None and server_pid is not None:
        server_cpu = (process_cpu_seconds(server_pid) or server_cpu) - server_cpu
    return Measurement(
        len(latencies),
        sum(errors.values()),
        wall,
        tuple(latencies),
        errors,
        cpu_seconds=server_cpu,
        client_cpu_seconds=client_cpu,
        error_latencies=tuple(error_latencies),
    )


async def _spread(call: Call, concurrency: int, count: int, seconds: float) -> None:
    """Make `count` calls (or for `seconds`), `concurrency` at a time, ignoring results."""
    remaining = count
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            with suppress(*FAILURES):  # the measured calls count them
                await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def classify_load(
    address: str,
    concurrency: int,
    requests: int,
    seconds: float,
    image: bytes = b"",
    features: dict[str, float] | None = None,
    warmup: int = 0,
    server_pid: int | None = None,
    backoff: float = 0.0,
) -> Measurement:
    """Closed-loop `classify` calls through `pyserving.client.AsyncClient`."""
    async with AsyncClient(address) as client:

        async def call() -> object:
            return await client.classify(image, features=features)

        return await closed_loop(call, concurrency, requests, seconds, warmup, server_pid, backoff)


async def echo_load(
    address: str,
    concurrency: int,
    requests: int,
    seconds: float,
    warmup: int = 0,
    server_pid: int | None = None,
) -> Measurement:
    """Closed-loop empty unary calls to `bench.echo`: the protocol's own ceiling."""
    async with grpc.aio.insecure_channel(address) as channel:
        echo = channel.unary_unary(ECHO_METHOD)

        async def call() -> object:
            return await echo(b"", timeout=30.0)

        return await closed_loop(call, concurrency, requests, seconds, warmup, server_pid)


async def http_load(
    address: str,
    path: str,
    concurrency: int,
    requests: int,
    seconds: float,
    image: bytes,
    warmup: int = 0,
    server_pid: int | None = None,
) -> Measurement:
    """Closed-loop POSTs of `image` (as image/jpeg) to `path`, a keep-alive connection each."""
    async with KeepAliveClient(address, path, image, "image/jpeg") as client:
        return await closed_loop(client.post, concurrency, requests, seconds, warmup, server_pid)
