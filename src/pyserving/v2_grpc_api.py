"""Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np

from pyserving import metrics, oip
from pyserving._proto import grpc_predict_v2_pb2 as pb
from pyserving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from pyserving.errors import InvalidInput, PyservingError
from pyserving.grpc_api import abort_with, deadline_of
from pyserving.service import Service


class InferenceApi(pb_grpc.GRPCInferenceServiceServicer):
    """The v2 protocol on top of the service. Runs on the event loop.

    Method names are the protocol's.
    """

    def __init__(self, service: Service, ready: Callable[[], bool]) -> None:
        self._service = service
        self._ready = ready

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            self._service.servable(request.name, oip.parse_version(request.version))
        except PyservingError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self._ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        try:
            servable = self._service.servable(request.name, oip.parse_version(request.version))
        except PyservingError as exc:
            await abort_with(context, exc)
            raise
        meta = oip.model_metadata(servable, self._service.manager.available_versions(servable.name))
        meta.pop("parameters")
        return pb.ModelMetadataResponse(**meta)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        with metrics.track("v2_grpc", self._service.manager.configured) as tracked:
            try:
                tracked.model = request.model_name
                inputs = [
                    _input(t, request.raw_input_contents, i) for i, t in enumerate(request.inputs)
                ]
                outputs = [
                    oip.RequestedOutput(o.name, _int_param(o.parameters, "classification"))
                    for o in request.outputs
                ]
                scores, tensors = await oip.infer(
                    self._service,
                    request.model_name,
                    oip.parse_version(request.model_version),
                    inputs,
                    outputs,
                    deadline_of(context),
                )
            except PyservingError as exc:
                tracked.code = exc.grpc_code
                await abort_with(context, exc)
                raise
            tracked.version = str(scores.model_version)
        response = pb.ModelInferResponse(
            model_name=scores.model_name,
            model_version=str(scores.model_version),
            id=request.id,
        )
        raw = bool(request.raw_input_contents)
        for tensor in tensors:
            out = response.outputs.add(
                name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
            )
            if tensor.datatype == "BYTES":
                if raw:
                    response.raw_output_contents.append(oip.encode_bytes_tensor(tensor.elements))
                else:
                    out.contents.bytes_contents.extend(tensor.elements)
            else:
                assert tensor.array is not None
                if raw:
                    response.raw_output_contents.append(tensor.array.astype("<f4").tobytes())
                else:
                    out.contents.fp32_contents.extend(tensor.array.ravel().tolist())
        return response


def _input(tensor: Any, raw_contents: Any, index: int) -> oip.InputTensor:
    where = f"inputs[{index}] ({tensor.name!r})"
    shape = oip.check_shape(list(tensor.shape))
    raw = raw_contents[index] if index < len(raw_contents) else None
    if tensor.datatype == "BYTES":
        if raw is not None:
            elements = oip.decode_bytes_tensor(raw, where)
        else:
            elements = list(tensor.contents.bytes_contents)
        return oip.InputTensor(tensor.name, "BYTES", shape, elements=elements)
    if raw is not None:
        array = oip.numeric_array(raw, tensor.datatype, shape, where)
    else:
        contents = tensor.contents
        values = contents.fp32_contents or contents.fp64_contents
        if not values and np.prod(shape):
            raise InvalidInput(f"{where}: no data (expected fp32_contents or raw_input_contents)")
        array = oip.numeric_array(list(values), tensor.datatype, shape, where)
    return oip.InputTensor(tensor.name, tensor.datatype, shape, array=array)


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
