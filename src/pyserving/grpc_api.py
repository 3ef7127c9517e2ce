"""gRPC wire adapter: protos in, `service` calls, protos or status codes out."""

from __future__ import annotations

import asyncio

import grpc

from pyserving import metrics
from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.errors import PyservingError
from pyserving.service import Service


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline in event-loop time, or None when the client set none."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + float(remaining)


async def abort_with(context: grpc.aio.ServicerContext, error: PyservingError) -> None:
    """End the call with the status that `error` carries."""
    await context.abort(grpc.StatusCode[error.grpc_code], str(error))


class ClassificationApi(pb_grpc.ClassificationServiceServicer):
    """`ClassificationService` on top of the service. Runs on the event loop."""

    def __init__(self, service: Service) -> None:
        self._service = service

    async def classify(
        self, request: pb.ClassificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassificationResponse:
        with metrics.track("grpc_classify", self._service.manager.configured) as tracked:
            tracked.model = request.model_name or self._service.manager.default_model
            try:
                result = await self._service.classify(
                    model_name=request.model_name,
                    model_version=request.model_version,
                    image=request.input,
                    features=dict(request.features),
                    k=request.top_k,
                    deadline=deadline_of(context),
                )
            except PyservingError as exc:
                tracked.code = exc.grpc_code
                await abort_with(context, exc)
                raise  # unreachable: abort raises
            tracked.version = str(result.model_version)
        return pb.ClassificationResponse(
            classes=[
                pb.ClassificationClass(name=p.name, score=p.score, index=p.index)
                for p in result.predictions
            ],
            model_name=result.model_name,
            model_version=result.model_version,
        )

    async def get_model_status(
        self, request: pb.ModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatusResponse:
        try:
            models = self._service.model_status(request.model_name)
        except PyservingError as exc:
            await abort_with(context, exc)
            raise
        return pb.ModelStatusResponse(
            models=[
                pb.ModelStatus(
                    name=m.name,
                    versions=[
                        pb.VersionStatus(
                            version=v.version,
                            state=v.state,  # type: ignore[arg-type]  # protobuf takes enum names
                            error=v.error,
                            engine=v.engine,
                            precision=v.precision,
                        )
                        for v in m.versions
                    ],
                )
                for m in models
            ],
            default_model=self._service.manager.default_model,
        )
