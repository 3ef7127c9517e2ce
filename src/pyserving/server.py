"""The model server process: one event loop, one thread pool, the gRPC and REST ports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Coroutine, Iterator
from typing import Any, NoReturn

import grpc
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving._proto import grpc_predict_v2_pb2 as v2_pb
from pyserving._proto import grpc_predict_v2_pb2_grpc as v2_pb_grpc
from pyserving._proto import tensorflow_serving_apis_pb2 as tfs_pb
from pyserving._proto import tensorflow_serving_apis_pb2_grpc as tfs_pb_grpc
from pyserving.core import metrics
from pyserving.core.auth import Tokens
from pyserving.core.manager import ModelManager
from pyserving.core.service import Service
from pyserving.core.settings import Settings
from pyserving.core.workers import worker_pool
from pyserving.cores import describe_cores
from pyserving.errors import PortUnavailable
from pyserving.grpc_api.auth import TokenInterceptor
from pyserving.grpc_api.classification import ClassificationApi
from pyserving.grpc_api.health import HealthReporter
from pyserving.grpc_api.oip import InferenceApi
from pyserving.grpc_api.tfs import ModelServiceApi, PredictionApi
from pyserving.preprocess import describe_decoders
from pyserving.rest_api.app import create_rest_app

log = logging.getLogger(__name__)

LINGER_SECONDS = 0.1  # after the last request finished, before the process ends
SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["ClassificationService"].full_name,
    v2_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    tfs_pb.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    tfs_pb.DESCRIPTOR.services_by_name["ModelService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel options: gRPC itself enforces the size, connection and stream limits."""
    return [
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.max_send_message_length", settings.max_request_bytes),
        # Soft and hard limits alike: between them gRPC would refuse only some calls.
        ("grpc.max_metadata_size", settings.max_header_bytes),
        ("grpc.absolute_max_metadata_size", settings.max_header_bytes),
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.max_connection_idle_ms", int(settings.idle_timeout_seconds * 1000)),
        ("grpc.so_reuseport", 0),
    ]


class Server:
    """The model server: `start`, `wait`, `drain`, `stop`, as uvicorn splits its `_serve`.

    `serve` runs the four in order and handles the signals; a test or an embedding program
    can run them itself, and `close` the gRPC port, which `serve` leaves to the process's
    exit (see `_exit_closing_connections`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.grpc_port = 0  # the bound ports, once started
        self.rest_port = 0
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()  # skip the rest of the drain
        self._executor = worker_pool(settings)
        self._manager: ModelManager | None = None
        self._service: Service | None = None
        self._health: HealthReporter | None = None
        self._following: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None
        self._rest: _RestServer | None = None
        self._rest_task: asyncio.Task[None] | None = None

    def request_stop(self, hurry: bool = False) -> None:
        """Ask the server to stop: after the drain, or at once when `hurry`."""
        if hurry:
            self._hurry.set()
        self._stopping.set()

    async def start(self) -> bool:
        """Load the models and open both ports; False if a stop came first (nothing opened).

        Raises PortUnavailable, ConfigError or ServableError saying what is wrong.
        """
        settings = self.settings
        check_ports(settings)  # before any model loads: a taken port should stop us at once
        _log_threads(settings)
        # Read before any model loads: a bad token file should stop the server at once.
        tokens = Tokens(settings.auth_token_file) if settings.auth_token_file else None
        if tokens is not None:
            log.info(
                "calls need a bearer token from %s (health stays open)", settings.auth_token_file
            )
        self._manager = manager = ModelManager(settings, self._executor)
        if not await _until_stopped(manager.start(), self._stopping):
            return False
        self._service = service = Service(manager, self._executor, settings)
        metrics.watch(service.load)
        self._health = health = HealthReporter(service)
        self._following = asyncio.create_task(health.follow())
        self._grpc = _grpc_server(settings, service, health, tokens)
        self.grpc_port = _bind_grpc(self._grpc, settings)
        await self._grpc.start()
        if settings.rest_api_port:
            app = create_rest_app(
                service,
                settings.max_request_bytes,
                settings.max_header_bytes,
                settings.max_headers,
                tokens,
                metrics_open=not settings.auth_metrics,
                metrics_path=settings.metrics_path,
            )
            self._rest, sock = _rest_server(app, settings)
            self._rest_task = asyncio.create_task(self._rest.serve(sockets=[sock]))
            self.rest_port = sock.getsockname()[1]
            scheme = "https" if settings.ssl_cert else "http"
            log.info("REST listening on %s://%s:%d", scheme, settings.host, self.rest_port)
        log.info(
            "serving models %s (default %s); gRPC listening on %s:%d",
            ", ".join(manager.model_names()),
            manager.default_model,
            settings.host,
            self.grpc_port,
        )
        return True

    async def wait(self) -> None:
        """Serve until `request_stop`."""
        await self._stopping.wait()

    async def drain(self) -> None:
        """Turn probes away, keep serving for the drain, then refuse new requests and wait
        for those in flight to finish (all within the grace period)."""
        if self._service is None or self._health is None:
            return
        await _drain(self._service, self._health, self.settings, self._hurry)

    async def stop(self) -> None:
        """Stop REST, unload every version and end the thread pool. The gRPC port stays
        open (refusing calls) until `close` or the process's end."""
        try:
            if self._following is not None:
                self._following.cancel()
            if self._rest is not None and self._rest_task is not None:
                self._rest.should_exit = True
                await self._rest_task
            if self._manager is not None:
                await self._manager.stop()
            if self._service is not None:
                # Let the last answers reach the wire before the connections close.
                await asyncio.sleep(LINGER_SECONDS)
                log.info("stopped")
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Close the gRPC port in process (`serve` ends the process instead; see
        `_exit_closing_connections`)."""
        if self._grpc is not None:
            await self._grpc.stop(grace=None)


async def serve(settings: Settings) -> None:
    """Load the models, serve until SIGINT or SIGTERM, then stop cleanly."""
    loop = asyncio.get_running_loop()
    server = Server(settings)
    signals: list[int] = []

    def on_signal(sig: int) -> None:
        signals.append(sig)
        # SIGINT, or a second signal: skip the rest of the drain.
        server.request_stop(hurry=sig == signal.SIGINT or len(signals) > 1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    started = False
    try:
        started = await server.start()
        if started:
            await server.wait()
            await server.drain()
    finally:
        await server.stop()
    if started:
        _exit_closing_connections()


def _log_threads(settings: Settings) -> None:
    batching = settings.batching
    log.info("sized for %s", describe_cores())
    log.info(
        "%d worker threads (niceness +%d); per version %d batch thread(s) of up to %d "
        "inputs, %d call(s) at once with lone inputs, %d ONNX Runtime thread(s) each, "
        "batch timeout %d µs",
        settings.pool_size,
        settings.worker_niceness,
        batching.batch_threads,
        batching.max_batch_size,
        batching.lone_threads,
        settings.intra_op_threads_for(batching),
        batching.batch_timeout_micros,
    )
    log.info("%s", describe_decoders())


def _grpc_server(
    settings: Settings, service: Service, health: HealthReporter, tokens: Tokens | None
) -> grpc.aio.Server:
    """The gRPC server with every protocol's servicer, health and reflection."""
    interceptors = [TokenInterceptor(tokens)] if tokens else []
    server = grpc.aio.server(options=grpc_options(settings), interceptors=interceptors)
    pb_grpc.add_ClassificationServiceServicer_to_server(ClassificationApi(service), server)
    v2_pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceApi(service), server)
    tfs_pb_grpc.add_PredictionServiceServicer_to_server(PredictionApi(service), server)
    tfs_pb_grpc.add_ModelServiceServicer_to_server(ModelServiceApi(service), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    return server


def _bind_grpc(server: grpc.aio.Server, settings: Settings) -> int:
    """Bind the gRPC port (TLS when configured); the port bound."""
    address = f"{settings.host}:{settings.port}"
    port: int
    try:
        if settings.ssl_cert and settings.ssl_key:
            port = server.add_secure_port(address, _server_credentials(settings))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # taken since `check_ports`
        port = 0
    if port == 0:
        raise PortUnavailable(_cannot_listen(settings.host, settings.port, "gRPC", "--port"))
    return port


def _exit_closing_connections() -> NoReturn:
    """End the process without `grpc.aio.Server.stop()`: the kernel closes every connection.

    `stop()` ends calls gRPC has received but not yet handed to a handler with CANCELLED
    (grpc/grpc#41785), which no client retries. A closed connection ends them with
    UNAVAILABLE, which every client may retry elsewhere. Nothing is lost: new requests have
    been refused and those in flight have finished (see `_drain`).
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _drain(
    service: Service, health: HealthReporter, settings: Settings, hurry: asyncio.Event
) -> None:
    """Turn probes away, keep serving for the drain, then refuse new requests and wait for
    those in flight to finish (all within the grace period)."""
    service.stop_taking_requests()
    await health.shutdown()
    if not hurry.is_set() and settings.drain_seconds > 0:
        log.info(
            "shutting down: health NOT_SERVING; still serving for %.1f s (--drain_seconds)",
            settings.drain_seconds,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), settings.drain_seconds)
    service.refuse_requests()
    log.info(
        "shutting down: refusing new requests (UNAVAILABLE / 503); finishing calls in flight "
        "(%d, up to %.0f s)",
        service.in_flight,
        settings.shutdown_grace_seconds,
    )
    try:
        async with asyncio.timeout(settings.shutdown_grace_seconds):
            await service.wait_none_in_flight()
    except TimeoutError:
        log.warning(
            "shutting down: %d calls still in flight after the grace period", service.in_flight
        )


class _RestServer(uvicorn.Server):
    """uvicorn's server, minus its signal handling: `serve` handles SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _rest_server(app: Any, settings: Settings) -> tuple[_RestServer, socket.socket]:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it on Linux: a response written in two pieces (headers, then
    # body) must not wait ~40 ms for the client's delayed ACK (Nagle's algorithm).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((settings.host, settings.rest_api_port))
    except OSError as exc:
        sock.close()
        raise PortUnavailable(
            _cannot_listen(settings.host, settings.rest_api_port, "REST", "--rest_api_port", exc)
        ) from None
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        loop="none",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        # Over it, 503. uvicorn counts the connection asking too, and requests in flight.
        limit_concurrency=settings.max_connections + 1,
        timeout_keep_alive=max(1, round(settings.idle_timeout_seconds)),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        ssl_certfile=settings.ssl_cert,
        ssl_keyfile=settings.ssl_key,
        ssl_ca_certs=settings.ssl_client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if settings.ssl_client_ca else ssl.CERT_NONE,
    )
    return _RestServer(config), sock


def check_ports(settings: Settings) -> None:
    """Raise PortUnavailable if the gRPC or REST port cannot be bound now.

    Each port is bound and released at once, so the ports are refused as before until
    the models are loaded; a port taken in between still fails with the same line.
    """
    ports = [(settings.port, "gRPC", "--port")]
    if settings.rest_api_port:
        ports.append((settings.rest_api_port, "REST", "--rest_api_port"))
    for port, what, flag in ports:
        if not port:
            continue  # any free port
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((settings.host, port))
            except OSError as exc:
                raise PortUnavailable(
                    _cannot_listen(settings.host, port, what, flag, exc)
                ) from None


def _cannot_listen(host: str, port: int, what: str, flag: str, exc: OSError | None = None) -> str:
    reason = (exc.strerror or str(exc)) if exc else "the port is in use or not allowed"
    return (
        f"cannot listen on {host}:{port} for {what}: {reason.lower()}; stop what holds it "
        f"or choose another {flag}"
    )


def _server_credentials(settings: Settings) -> grpc.ServerCredentials:
    assert settings.ssl_cert and settings.ssl_key
    client_ca = settings.ssl_client_ca.read_bytes() if settings.ssl_client_ca else None
    return grpc.ssl_server_credentials(
        [(settings.ssl_key.read_bytes(), settings.ssl_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


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
