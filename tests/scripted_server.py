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

# What every explain call answers, by the model's kind: an image's grid (weights row by
# row: the left half lowers the class's score when hidden, the right half raises it a
# little), a weight per word of the text in turn, a clip's windows, a weight per feature
# in turn. Unknown class names are NOT_FOUND, as on a real server.
IMAGE_GRID = (2, 4)
IMAGE_WEIGHTS = (0.4, 0.2, -0.02, -0.04, 0.3, 0.1, -0.03, -0.01)
WORD_WEIGHTS = (0.4, -0.1, 0.05, 0.0)
WINDOWS = ((0.0, 0.5, 0.0), (0.5, 1.0, 0.35), (1.0, 1.5, 0.2), (1.5, 2.0, -0.05))
FEATURE_WEIGHTS = (0.25, -0.1)
EXPLAIN_METHOD = "scripted"


@dataclass(frozen=True)
class ScriptedModel:
    """A model the scripted server reports: its kind and features ("" kind: still loading).

    `explain_error`: (gRPC status code name, message) with which explain calls fail.
    """

    name: str
    kind: str
    features: tuple[str, ...] = ()
    explain_error: tuple[str, str] | None = None


@dataclass
class ScriptedServer:
    """Reports `models` in its status; answers every classify with one class, `heard`, and
    every explain with the weights above for the model's kind."""

    models: Sequence[ScriptedModel]
    default: str
    address: str = ""
    requests: list[pb.ClassificationRequest] = field(default_factory=list)
    explain_requests: list[pb.ExplainRequest] = field(default_factory=list)
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

    def explain(
        self, request: pb.ExplainRequest, context: grpc.ServicerContext
    ) -> pb.ExplainResponse:
        with self.lock:
            self.explain_requests.append(request)
        name = request.model_name or self.default
        model = next(m for m in self.models if m.name == name)
        if model.explain_error is not None:
            code, message = model.explain_error
            context.abort(grpc.StatusCode[code], message)
        if request.class_name not in ("", "heard"):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no class {request.class_name!r}: heard")
        rows, columns = IMAGE_GRID if model.kind == "image" else (0, 0)
        return pb.ExplainResponse(
            model_name=name,
            model_version=1,
            explained=pb.ClassificationClass(name="heard", score=0.75, index=0),
            kind=model.kind,
            parts=_parts(model, request),
            grid_rows=rows,
            grid_columns=columns,
            method=EXPLAIN_METHOD,
        )

    def get_model_status(
        self, request: pb.ModelStatusRequest, context: grpc.ServicerContext
    ) -> pb.ModelStatusResponse:
        return pb.ModelStatusResponse(
            models=[_status(m) for m in self.models], default_model=self.default
        )

    def received(self) -> list[pb.ClassificationRequest]:
        """The classify requests with an input (the web app's health checks send none)."""
        with self.lock:
            return [r for r in self.requests if r.input or r.features]


def _parts(model: ScriptedModel, request: pb.ExplainRequest) -> list[pb.ExplanationPart]:
    kind = model.kind
    if kind == "image":
        columns = IMAGE_GRID[1]
        return [
            pb.ExplanationPart(weight=w, row=i // columns, column=i % columns)
            for i, w in enumerate(IMAGE_WEIGHTS)
        ]
    if kind == "text":
        words = request.input.decode("utf-8").split()
        return [
            pb.ExplanationPart(weight=WORD_WEIGHTS[i % len(WORD_WEIGHTS)], name=word)
            for i, word in enumerate(words)
        ]
    if kind == "audio":
        return [
            pb.ExplanationPart(weight=w, start_seconds=start, end_seconds=end)
            for start, end, w in WINDOWS
        ]
    return [
        pb.ExplanationPart(weight=FEATURE_WEIGHTS[i % len(FEATURE_WEIGHTS)], name=name)
        for i, name in enumerate(model.features or sorted(request.features))
    ]


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
