"""TF Serving's gRPC API in process: a real grpc.aio server on the real service, called with
pyserving's own wire-compatible stubs (tests/e2e/test_tf_serving.py uses TF Serving's)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from pyserving._proto import grpc_predict_v2_pb2 as v2
from pyserving._proto import grpc_predict_v2_pb2_grpc as v2_grpc
from pyserving._proto import tensorflow_core_pb2 as tf
from pyserving._proto import tensorflow_serving_apis_pb2 as pb
from pyserving._proto import tensorflow_serving_apis_pb2_grpc as pb_grpc
from pyserving.core.service import Service
from pyserving.core.settings import BatchingSettings
from pyserving.grpc_api.tfs_tensors import to_array, to_proto
from tests.onnx_models import png


def strings(*values: bytes) -> tf.TensorProto:
    tensor = tf.TensorProto(dtype=tf.DT_STRING, string_val=list(values))
    tensor.tensor_shape.dim.add(size=len(values))
    return tensor


def spec(name: str, version: int = 0) -> pb.ModelSpec:
    model = pb.ModelSpec(name=name)
    if version:
        model.version.value = version
    return model


async def test_predict_images_answers_classes_and_scores_best_first(
    grpc_channel: grpc.aio.Channel,
) -> None:
    api = pb_grpc.PredictionServiceStub(grpc_channel)
    request = pb.PredictRequest(model_spec=spec("colours", 1))
    request.inputs["image"].CopyFrom(strings(png((0, 0, 250)), png((250, 0, 0))))
    answer = await api.Predict(request)
    assert (answer.model_spec.name, answer.model_spec.version.value) == ("colours", 1)
    classes, scores = (
        to_array(answer.outputs["classes"], "c"),
        to_array(answer.outputs["scores"], "s"),
    )
    assert classes.shape == scores.shape == (2, 2)  # the signature's top_k is 2
    assert [row[0] for row in classes] == [b"blue", b"red"]
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first

    request.output_filter.append("scores")
    assert list((await api.Predict(request)).outputs) == ["scores"]


async def test_predict_features_and_texts(grpc_channel: grpc.aio.Channel) -> None:
    api = pb_grpc.PredictionServiceStub(grpc_channel)
    features = pb.PredictRequest(model_spec=spec("lin"))
    features.inputs["features"].CopyFrom(to_proto(np.array([[0.0, 5.0], [3.0, 1.0]], np.float32)))
    classes = to_array((await api.Predict(features)).outputs["classes"], "classes")
    assert classes[:, 0].tolist() == [b"B", b"A"]
    texts = pb.PredictRequest(model_spec=spec("letters"))
    texts.inputs["text"].CopyFrom(strings(b"aaab", "bbb \u00e9".encode()))
    classes = to_array((await api.Predict(texts)).outputs["classes"], "classes")
    assert classes[:, 0].tolist() == [b"a", b"b"]


async def test_classify_reads_tf_examples(grpc_channel: grpc.aio.Channel) -> None:
    api = pb_grpc.PredictionServiceStub(grpc_channel)
    request = pb.ClassificationRequest(model_spec=spec("lin"))
    for a, b in ((0.0, 2.0), (4.0, 1.0)):
        example = request.input.example_list.examples.add()
        example.features.feature["a"].float_list.value.append(a)
        example.features.feature["b"].float_list.value.append(b)
    answer = await api.Classify(request)
    assert [c.classes[0].label for c in answer.result.classifications] == ["B", "A"]
    images = pb.ClassificationRequest(model_spec=spec("colours"))
    example = images.input.example_list.examples.add()
    example.features.feature["image"].bytes_list.value.append(png((0, 250, 0)))
    answer = await api.Classify(images)
    assert answer.result.classifications[0].classes[0].label == "green"


async def test_metadata_packs_the_signatures(grpc_channel: grpc.aio.Channel) -> None:
    api = pb_grpc.PredictionServiceStub(grpc_channel)
    request = pb.GetModelMetadataRequest(
        model_spec=spec("colours"), metadata_field=["signature_def"]
    )
    answer = await api.GetModelMetadata(request)
    signatures = pb.SignatureDefMap()
    assert answer.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "classify"}
    default = signatures.signature_def["serving_default"]
    assert default.inputs["image"].dtype == tf.DT_STRING
    assert [d.size for d in default.outputs["scores"].tensor_shape.dim] == [-1, 2]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.GetModelMetadata(pb.GetModelMetadataRequest(model_spec=spec("colours")))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_model_status_and_errors_use_tf_servings_codes(
    grpc_channel: grpc.aio.Channel,
) -> None:
    models = pb_grpc.ModelServiceStub(grpc_channel)
    status = await models.GetModelStatus(pb.GetModelStatusRequest(model_spec=spec("lin")))
    (version,) = status.model_version_status
    assert (version.version, version.state, version.status.error_code) == (
        1,
        pb.ModelVersionStatus.AVAILABLE,
        0,
    )
    api = pb_grpc.PredictionServiceStub(grpc_channel)
    cases = [
        (api.Predict(pb.PredictRequest(model_spec=spec("nope"))), grpc.StatusCode.NOT_FOUND),
        (api.Predict(pb.PredictRequest(model_spec=spec("lin", 7))), grpc.StatusCode.NOT_FOUND),
        (api.Predict(pb.PredictRequest(model_spec=spec("lin"))), grpc.StatusCode.INVALID_ARGUMENT),
        (api.Regress(pb.RegressionRequest(model_spec=spec("lin"))), grpc.StatusCode.UNIMPLEMENTED),
        (api.MultiInference(pb.MultiInferenceRequest()), grpc.StatusCode.UNIMPLEMENTED),
    ]
    for call, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == code, info.value.details()
    bad = pb.PredictRequest(model_spec=spec("colours"))
    bad.inputs["image"].CopyFrom(strings(b"not an image"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.Predict(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    wrong = pb.PredictRequest(model_spec=spec("colours"))
    wrong.inputs["image"].CopyFrom(strings(png((1, 2, 3))))
    wrong.output_filter.append("logits")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.Predict(wrong)
    assert "output_filter" in (info.value.details() or "")


async def test_reload_config_serves_the_new_model_list(
    grpc_channel: grpc.aio.Channel, service: Service, tmp_path: Path
) -> None:
    models = pb_grpc.ModelServiceStub(grpc_channel)
    request = pb.ReloadConfigRequest()
    entry = request.config.model_config_list.config.add(
        name="only", base_path=str(tmp_path / "lin")
    )
    entry.model_platform = "tensorflow"
    answer = await models.HandleReloadConfigRequest(request)
    assert answer.status.error_code == 0, answer.status.error_message
    assert service.model_names() == ["only"]
    status = await models.GetModelStatus(pb.GetModelStatusRequest(model_spec=spec("only")))
    assert status.model_version_status[0].state == pb.ModelVersionStatus.AVAILABLE

    entry.model_platform = "pytorch"
    answer = await models.HandleReloadConfigRequest(request)
    assert answer.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "pytorch" in answer.status.error_message
    assert service.model_names() == ["only"]  # the last good list keeps serving


async def test_triton_model_config(grpc_channel: grpc.aio.Channel) -> None:
    api = v2_grpc.GRPCInferenceServiceStub(grpc_channel)
    config = (await api.ModelConfig(v2.ModelConfigRequest(name="lin"))).config
    default = BatchingSettings().max_batch_size
    assert (config.name, config.platform, config.max_batch_size) == (
        "lin",
        "onnxruntime_onnx",
        default,
    )
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("features", v2.TYPE_FP32, [2])
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("probabilities", [2])]
    assert config.HasField("dynamic_batching")
    image = (await api.ModelConfig(v2.ModelConfigRequest(name="colours", version="1"))).config
    assert image.input[0].data_type == v2.TYPE_STRING
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.ModelConfig(v2.ModelConfigRequest(name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_tensors_round_trip_through_every_dtype() -> None:
    for array in (
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1.5, -2], np.float16),
        np.array([[1, -2]], np.int8),
        np.array([2**40], np.int64),
        np.array([True, False]),
        np.array([7], np.uint64),
    ):
        back = to_array(to_proto(array), "x")
        assert back.dtype == array.dtype and np.array_equal(back, array)
    raw = tf.TensorProto(dtype=tf.DT_FLOAT, tensor_content=np.array([1, 2], "<f4").tobytes())
    raw.tensor_shape.dim.add(size=2)
    assert to_array(raw, "x").tolist() == [1.0, 2.0]
    filled = tf.TensorProto(dtype=tf.DT_INT32, int_val=[3])
    filled.tensor_shape.dim.add(size=3)
    assert to_array(filled, "x").tolist() == [3, 3, 3]
