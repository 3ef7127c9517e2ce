"""`inference.GRPCInferenceService` in process: a real grpc.aio server on the real service."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from pyserving._proto import grpc_predict_v2_pb2 as pb
from pyserving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from pyserving.core import oip
from tests.onnx_models import png


def stub(channel: grpc.aio.Channel) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(channel)


async def test_liveness_readiness_and_metadata(grpc_channel: grpc.aio.Channel) -> None:
    api = stub(grpc_channel)
    assert (await api.ServerLive(pb.ServerLiveRequest())).live
    assert (await api.ServerReady(pb.ServerReadyRequest())).ready
    assert (await api.ModelReady(pb.ModelReadyRequest(name="lin", version="1"))).ready
    assert not (await api.ModelReady(pb.ModelReadyRequest(name="lin", version="2"))).ready
    assert not (await api.ModelReady(pb.ModelReadyRequest(name="nope"))).ready
    server = await api.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "pyserving" and "classification" in server.extensions
    meta = await api.ModelMetadata(pb.ModelMetadataRequest(name="lin"))
    assert (meta.name, list(meta.versions), meta.platform) == ("lin", ["1"], oip.PLATFORM)
    assert meta.inputs[0].datatype == "FP32" and list(meta.inputs[0].shape) == [-1, 2]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.ModelMetadata(pb.ModelMetadataRequest(name="lin", version="x"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_infer_images_as_contents_and_features_as_raw(
    grpc_channel: grpc.aio.Channel,
) -> None:
    api = stub(grpc_channel)
    images = pb.ModelInferRequest(model_name="colours", id="r1")
    tensor = images.inputs.add(name="image", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([png((0, 0, 250)), png((250, 0, 0))])
    answer = await api.ModelInfer(images)
    assert (answer.model_name, answer.model_version, answer.id) == ("colours", "1", "r1")
    (out,) = answer.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("probabilities", "FP32", [2, 3])
    probs = np.array(out.contents.fp32_contents).reshape(2, 3)
    assert np.argmax(probs, axis=1).tolist() == [2, 0]

    features = pb.ModelInferRequest(model_name="lin", model_version="1")
    features.inputs.add(name="features", datatype="FP32", shape=[1, 2])
    features.raw_input_contents.append(np.array([[0.0, 5.0]], "<f4").tobytes())
    top = features.outputs.add(name="probabilities")
    top.parameters["classification"].int64_param = 1
    answer = await api.ModelInfer(features)
    (out,) = answer.outputs
    assert (out.datatype, list(out.shape)) == ("BYTES", [1, 1])
    (raw,) = answer.raw_output_contents
    (element,) = oip.decode_bytes_tensor(raw, "output")
    assert element.split(b":")[1:] == [b"1", b"B"]


@pytest.mark.parametrize(
    ("model", "datatype", "code", "message"),
    [
        ("nope", "FP32", grpc.StatusCode.NOT_FOUND, "'nope'"),
        ("lin", "INT8", grpc.StatusCode.INVALID_ARGUMENT, "INT8"),
        ("colours", "FP32", grpc.StatusCode.INVALID_ARGUMENT, "takes an input named 'image'"),
    ],
)
async def test_infer_errors_end_the_call_with_their_status(
    grpc_channel: grpc.aio.Channel, model: str, datatype: str, code: grpc.StatusCode, message: str
) -> None:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="features", datatype=datatype, shape=[1, 2])
    request.raw_input_contents.append(np.zeros((1, 2), "<f4").tobytes())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(grpc_channel).ModelInfer(request)
    assert info.value.code() == code and message in (info.value.details() or "")


async def test_an_input_without_data_is_invalid(grpc_channel: grpc.aio.Channel) -> None:
    request = pb.ModelInferRequest(model_name="lin")
    request.inputs.add(name="features", datatype="FP32", shape=[1, 2])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(grpc_channel).ModelInfer(request)
    assert "no data" in (info.value.details() or "")
