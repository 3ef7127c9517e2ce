"""Asks a server for versions by label with TensorFlow Serving's own Python client.

In a process of its own, as tf_serving_client.py (TensorFlow's protos and pyserving's
wire-compatible stubs share full names). Usage: python tf_serving_labels.py ADDRESS MODEL
LABEL... For each label: Predict (a features model, one row of feature `x` = 1.0),
GetModelMetadata and GetModelStatus; prints a JSON object, label to what came back.
"""

import json
import sys

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def main() -> None:
    address, model, *labels = sys.argv[1:]
    channel = grpc.insecure_channel(address)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    answer: dict[str, object] = {}
    for label in labels:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.version_label = label
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
        try:
            result = predictions.Predict(request, 30)
        except grpc.RpcError as exc:
            answer[label] = {"code": exc.code().name, "details": exc.details()}
            continue
        classes = tf.make_ndarray(result.outputs["classes"])
        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata_request.model_spec.name = model
        metadata_request.model_spec.version_label = label
        metadata_request.metadata_field.append("signature_def")
        metadata = predictions.GetModelMetadata(metadata_request, 30)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = model
        status_request.model_spec.version_label = label
        status = models.GetModelStatus(status_request, 30)
        answer[label] = {
            "version": result.model_spec.version.value,
            "class": classes[0][0].decode(),
            "metadata_version": metadata.model_spec.version.value,
            "status_versions": [s.version for s in status.model_version_status],
        }
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
