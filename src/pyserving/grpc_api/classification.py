"""`ClassificationService` over gRPC: protos in, `service` calls, protos out."""

from __future__ import annotations

import grpc

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.core.service import Service
from pyserving.grpc_api.calls import deadline_of, maps_errors
from pyserving.results import ClassifyRequest, Example, ModelMetadata


class ClassificationApi(pb_grpc.ClassificationServiceServicer):
    """`ClassificationService` on top of the service. Runs on the event loop."""

    def __init__(self, service: Service) -> None:
        self._service = service

    @maps_errors
    async def classify(
        self, request: pb.ClassificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassificationResponse:
        async def parse(model: ModelMetadata) -> ClassifyRequest:
            example = Example(request.input, dict(request.features))
            return ClassifyRequest((example,), request.top_k)

        (result,) = await self._service.classify(
            "grpc_classify",
            request.model_name,
            request.model_version,
            parse,
            deadline_of(context),
            request.version_label,
        )
        return pb.ClassificationResponse(
            classes=[
                pb.ClassificationClass(name=p.name, score=p.score, index=p.index)
                for p in result.predictions
            ],
            model_name=result.model_name,
            model_version=result.model_version,
        )

    @maps_errors
    async def explain(
        self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainResponse:
        async def parse(model: ModelMetadata) -> tuple[Example, str]:
            return Example(request.input, dict(request.features)), request.class_name

        result = await self._service.explain(
            "grpc_explain",
            request.model_name,
            request.model_version,
            parse,
            deadline_of(context),
            request.version_label,
        )
        c = result.explained
        return pb.ExplainResponse(
            model_name=result.model_name,
            model_version=result.model_version,
            explained=pb.ClassificationClass(name=c.name, score=c.score, index=c.index),
            kind=result.kind,
            parts=[
                pb.ExplanationPart(
                    weight=p.weight,
                    name=p.name,
                    start_seconds=p.start,
                    end_seconds=p.end,
                    row=p.row,
                    column=p.column,
                )
                for p in result.parts
            ],
            grid_rows=result.grid[0],
            grid_columns=result.grid[1],
            method=result.method,
        )

    @maps_errors
    async def get_model_status(
        self, request: pb.ModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatusResponse:
        models = self._service.model_status(request.model_name)
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
                            kind=v.kind,
                            features=v.features,
                            engine_reason=v.engine_reason,
                            labels=v.labels,
                        )
                        for v in m.versions
                    ],
                )
                for m in models
            ],
            default_model=self._service.default_model,
        )
