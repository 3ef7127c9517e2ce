"""`ClassificationService` in process: a real grpc.aio server on the real service."""

from __future__ import annotations

import grpc
import pytest

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from tests.onnx_models import png


async def test_classify_an_image_and_features(grpc_channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.ClassificationServiceStub(grpc_channel)
    red = await stub.classify(pb.ClassificationRequest(input=png((200, 10, 10))))
    assert [c.name for c in red.classes] == ["red", "green"]  # default model, its top_k
    assert red.classes[0].index == 0 and 0 < red.classes[0].score <= 1
    assert (red.model_name, red.model_version) == ("colours", 1)
    b = await stub.classify(
        pb.ClassificationRequest(model_name="lin", features={"a": 0.0, "b": 5.0}, top_k=1)
    )
    assert [c.name for c in b.classes] == ["B"]


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (pb.ClassificationRequest(model_name="nope"), grpc.StatusCode.NOT_FOUND, "'nope'"),
        (pb.ClassificationRequest(input=b"hello"), grpc.StatusCode.INVALID_ARGUMENT, "decode"),
        (
            pb.ClassificationRequest(model_name="lin", model_version=9),
            grpc.StatusCode.NOT_FOUND,
            "no version 9",
        ),
        (
            pb.ClassificationRequest(model_name="lin", features={"a": 1.0}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "missing feature",
        ),
    ],
)
async def test_domain_errors_end_the_call_with_their_status(
    grpc_channel: grpc.aio.Channel,
    request_: pb.ClassificationRequest,
    code: grpc.StatusCode,
    message: str,
) -> None:
    stub = pb_grpc.ClassificationServiceStub(grpc_channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.classify(request_)
    assert info.value.code() == code and message in (info.value.details() or "")


async def test_model_status_names_the_engine_the_kind_and_the_default(
    grpc_channel: grpc.aio.Channel,
) -> None:
    stub = pb_grpc.ClassificationServiceStub(grpc_channel)
    status = await stub.get_model_status(pb.ModelStatusRequest())
    assert [m.name for m in status.models] == ["colours", "letters", "lin"]
    assert status.default_model == "colours"
    (version,) = status.models[1].versions
    assert version.version == 1 and version.engine == "onnxruntime"
    assert pb.VersionStatus.State.Name(version.state) == "AVAILABLE"
    kinds = [(m.versions[0].kind, list(m.versions[0].features)) for m in status.models]
    assert kinds == [("image", []), ("text", []), ("features", ["a", "b"])]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.get_model_status(pb.ModelStatusRequest(model_name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_classify_utf8_text_in_input(grpc_channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.ClassificationServiceStub(grpc_channel)
    a = await stub.classify(pb.ClassificationRequest(model_name="letters", input="ááaa a".encode()))
    assert [c.name for c in a.classes] == ["a"] and a.model_name == "letters"
    for data, message in ((b"\xc3", "not valid UTF-8"), (b" ", "the text is empty")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.classify(pb.ClassificationRequest(model_name="letters", input=data))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (info.value.details() or "")
