"""Runs TensorFlow Serving's own Python client (tensorflow-serving-api) against a server.

In a process of its own: its stubs import TensorFlow's protos, whose full names are the
ones pyserving's wire-compatible stubs define, and one descriptor pool holds only one.
Usage: python tf_serving_client.py ADDRESS MODEL IMAGE_FILE RELOAD_BASE_PATH
Prints a JSON object with what the server answered, for the test to check.
"""

import json
import sys
from pathlib import Path

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2


def main() -> None:
    address, model, image_path, reload_base = sys.argv[1:5]
    image = Path(image_path).read_bytes()
    channel = grpc.insecure_channel(address)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    answer: dict[str, object] = {}

    # The classic image client: encoded JPEG bytes in a DT_STRING tensor.
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata_request.model_spec.name = model
    metadata_request.metadata_field.append("signature_def")
    metadata = predictions.GetModelMetadata(metadata_request, 30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    answer["signatures"] = sorted(signatures.signature_def)
    answer["method"] = default.method_name
    (input_name,) = default.inputs
    answer["input_dtype"] = tf.dtypes.as_dtype(default.inputs[input_name].dtype).name

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto([image], shape=[1]))
    result = predictions.Predict(request, 30)
    classes = tf.make_ndarray(result.outputs["classes"])
    scores = tf.make_ndarray(result.outputs["scores"])
    answer["classes"] = [c.decode() for c in classes[0]]
    answer["scores"] = scores[0].tolist()
    answer["version"] = result.model_spec.version.value

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = model
    example = classify.input.example_list.examples.add()
    example.features.feature[input_name].bytes_list.value.append(image)
    classified = predictions.Classify(classify, 30)
    answer["classify"] = [c.label for c in classified.result.classifications[0].classes]

    try:
        predictions.Regress(regression_pb2.RegressionRequest(), 30)
    except grpc.RpcError as exc:
        answer["regress"] = exc.code().name

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = model
    status = models.GetModelStatus(status_request, 30)
    answer["status"] = [
        (s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
        for s in status.model_version_status
    ]

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(
        f'model_config_list {{ config {{ name: "{model}" base_path: "{reload_base}" '
        f'model_platform: "tensorflow" }} config {{ name: "second" base_path: "{reload_base}" '
        'model_platform: "tensorflow" model_version_policy { latest { num_versions: 1 } } } }',
        config,
    )
    reload = models.HandleReloadConfigRequest(
        model_management_pb2.ReloadConfigRequest(config=config), 120
    )
    answer["reload"] = [reload.status.error_code, reload.status.error_message]
    status_request.model_spec.name = "second"
    second = models.GetModelStatus(status_request, 30)
    answer["second"] = [
        get_model_status_pb2.ModelVersionStatus.State.Name(s.state)
        for s in second.model_version_status
    ]
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
