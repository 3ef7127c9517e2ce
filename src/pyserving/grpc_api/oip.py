"""Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`).

Inputs come as typed `contents` or as `raw_input_contents`; outputs go back the way the
inputs came, and as raw contents whenever an output has no typed field (FP16).
"""

from __future__ import annotations

import math
from typing import Any

import grpc

from pyserving._proto import grpc_predict_v2_pb2 as pb
from pyserving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from pyserving.core import oip
from pyserving.core.service import Batch, Service
from pyserving.errors import InvalidInput, PyservingError
from pyserving.grpc_api.calls import deadline_of, maps_errors
from pyserving.results import ModelMetadata

# The typed field of InferTensorContents that holds each datatype (FP16 has none: raw only).
CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceApi(pb_grpc.GRPCInferenceServiceServicer):
    """The v2 protocol on top of the service. Runs on the event loop.

    Method names are the protocol's.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._service.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            ready = self._service.model_ready(request.name, oip.parse_version(request.version))
        except PyservingError:
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    @maps_errors
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        model = self._service.metadata(request.name, oip.parse_version(request.version))
        meta = oip.model_metadata(model)
        meta.pop("parameters")
        return pb.ModelMetadataResponse(**meta)

    @maps_errors
    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        version = oip.parse_version(request.version)
        model = self._service.metadata(request.name, version)
        config = oip.model_config(model, self._service.batching(request.name, version))
        return pb.ModelConfigResponse(config=pb.ModelConfig(**config))

    @maps_errors
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        version = oip.parse_version(request.model_version)
        if self._service.takes_tensors(request.model_name, version):
            return await self._infer_tensors(request, version, context)

        async def parse(model: ModelMetadata) -> tuple[Batch, list[oip.RequestedOutput]]:
            inputs, outputs = _tensors(request)
            return oip.batch(model, inputs, outputs), outputs

        scores, requested = await self._service.predict(
            "v2_grpc", request.model_name, version, parse, deadline_of(context)
        )
        response = pb.ModelInferResponse(
            model_name=scores.model_name,
            model_version=str(scores.model_version),
            id=request.id,
        )
        _write(response, oip.outputs(scores, requested), bool(request.raw_input_contents))
        return response

    async def _infer_tensors(
        self, request: pb.ModelInferRequest, version: int, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        async def parse(model: ModelMetadata) -> tuple[Batch, list[oip.RequestedOutput]]:
            inputs, outputs = _tensors(request)
            return oip.tensor_batch(model, inputs, outputs), outputs

        answer, requested = await self._service.infer(
            "v2_grpc", request.model_name, version, parse, deadline_of(context)
        )
        response = pb.ModelInferResponse(
            model_name=answer.model_name,
            model_version=str(answer.model_version),
            id=request.id,
        )
        _write(response, oip.tensor_outputs(answer, requested), bool(request.raw_input_contents))
        return response


def _write(response: pb.ModelInferResponse, tensors: list[oip.OutputTensor], raw: bool) -> None:
    """Add `tensors` to the response: as raw contents, or each in its typed field."""
    raw = raw or any(t.datatype not in CONTENTS for t in tensors)
    for tensor in tensors:
        out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(oip.raw(tensor))
        else:
            getattr(out.contents, CONTENTS[tensor.datatype]).extend(oip.flat(tensor))


def _tensors(
    request: pb.ModelInferRequest,
) -> tuple[list[oip.InputTensor], list[oip.RequestedOutput]]:
    """The request's input tensors and the outputs it asks for."""
    inputs = [_input(t, request.raw_input_contents, i) for i, t in enumerate(request.inputs)]
    outputs = [
        oip.RequestedOutput(o.name, _int_param(o.parameters, "classification"))
        for o in request.outputs
    ]
    return inputs, outputs


def _input(tensor: Any, raw_contents: Any, index: int) -> oip.InputTensor:
    where = f"inputs[{index}] ({tensor.name!r})"
    if index < len(raw_contents):
        data: Any = raw_contents[index]
    elif tensor.datatype == "BYTES":
        data = list(tensor.contents.bytes_contents)
    else:
        field = CONTENTS.get(tensor.datatype)
        data = list(getattr(tensor.contents, field)) if field else []
        if field == "fp32_contents" and not data:
            data = list(tensor.contents.fp64_contents)  # FP32 sent as doubles is taken too
        if not data and math.prod(tensor.shape):
            expected = f"{field} or raw_input_contents" if field else "raw_input_contents"
            raise InvalidInput(f"{where}: no data (expected {expected})")
    return oip.input_tensor(tensor.name, tensor.datatype, list(tensor.shape), data, where)


def _int_param(parameters: Any, key: str) -> int:
    if key not in parameters:
        return 0
    param = parameters[key]
    which = param.WhichOneof("parameter_choice")
    value = getattr(param, which) if which else 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"parameter {key!r} must be an integer, got {value!r}") from None
