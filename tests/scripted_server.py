"""A real gRPC `ClassificationService` on loopback with scripted answers, for the web app.

The web app's one dependency is this service, so a scripted one is the true seam for
what a real server cannot be made to report (a kind whose module is not installed, a
model still loading) and for looking at the exact bytes the web app sends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class ScriptedModel:
    """A model the scripted server reports: its kind and features ("" kind: still loading)."""

    name: str
    kind: str
    features: tuple[str, ...] = ()


@dataclass
class ScriptedServer:
    """Reports `models` in its status; answers every classify with one class, `heard`."""

    models: Sequence[ScriptedModel]
    default: str
    address: str = ""
    requests: list[pb.ClassificationRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def classify(
        self, request: pb.ClassificationRequest, context: grpc.ServicerContext
    ) -> pb.ClassificationResponse:
        with self.lock:
            self.requests.append(request)
        if not request.input and not request.features:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty input")
        return pb.ClassificationResponse(
            classes=[pb.ClassificationClass(name="heard", score=0.75, index=0)],
            model_name=request.model_name or self.default,
            model_version=1,
        )

    def get_model_status(
        self, request: pb.ModelStatusRequest, context: grpc.ServicerContext
    ) -> pb.ModelStatusResponse:
        return pb.ModelStatusResponse(
            models=[_status(m) for m in self.models], default_model=self.default
        )

    def explain(self, request: pb.ExplainRequest, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "explain is not scripted")

    def received(self) -> list[pb.ClassificationRequest]:
        """The classify requests with an input (the web app's health checks send none)."""
        with self.lock:
            return [r for r in self.requests if r.input or r.features]


def _status(model: ScriptedModel) -> pb.ModelStatus:
    state = pb.VersionStatus.AVAILABLE if model.kind else pb.VersionStatus.LOADING
    version = pb.VersionStatus(
        version=1, state=state, kind=model.kind, features=list(model.features)
    )
    return pb.ModelStatus(name=model.name, versions=[version])


@contextlib.contextmanager
def scripted_server(models: Sequence[ScriptedModel], default: str) -> Iterator[ScriptedServer]:
    """Serve a ScriptedServer on a free loopback port until the block ends."""
    service = ScriptedServer(models, default)
    server = grpc.server(ThreadPoolExecutor(4))
    pb_grpc.add_ClassificationServiceServicer_to_server(service, server)  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    service.address = f"127.0.0.1:{port}"
    try:
        yield service
    finally:
        server.stop(None)
