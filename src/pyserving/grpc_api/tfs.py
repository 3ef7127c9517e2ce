"""TensorFlow Serving's gRPC API: `tensorflow.serving.PredictionService` and `ModelService`.

`Predict` on a classifier takes one tensor (under the model's input name, or alone under
any name): `DT_STRING` encoded images, texts or audio clips of shape [N] (or [N, 1]), or a
float [N, F] of features; it answers `scores` (float [N, K], best first) and `classes`
(string [N, K]), K the signature's top_k, as TF Serving's Inception export did. A tensor
model takes its named inputs and answers every output. `output_filter` picks outputs.
`Classify` takes tf.Examples: a bytes feature under the input name (or the only bytes
feature) for image, text and audio models, float features by name for features models.
`signature_name` is not checked: every signature of a pyserving model is the same function.
`model_spec.version_label` names a version by its label, passed on to the service.
`Regress` and `MultiInference` answer UNIMPLEMENTED.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np

from pyserving._proto import tensorflow_core_pb2 as tf
from pyserving._proto import tensorflow_serving_apis_pb2 as pb
from pyserving._proto import tensorflow_serving_apis_pb2_grpc as pb_grpc
from pyserving.core.service import Batch, Service
from pyserving.core.tfs_config import models_of
from pyserving.errors import ConfigError, InvalidInput, PyservingError
from pyserving.grpc_api.calls import deadline_of, maps_errors
from pyserving.grpc_api.tfs_tensors import tensor_info, to_array, to_proto
from pyserving.results import ClassifyRequest, Example, ModelMetadata

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
OUTPUTS = ("classes", "scores")  # a classifier's Predict outputs
MAX_EXAMPLES = 256
_ENCODED = ("image", "text", "audio")  # kinds whose input is bytes


def model_of(spec: pb.ModelSpec) -> tuple[str, int, str]:
    """The model name, version (0: the newest) and version label a `ModelSpec` asks for."""
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else ""
    version = spec.version.value if spec.HasField("version") else 0
    if version < 0:
        raise InvalidInput(f"model_spec.version must be positive, got {version}")
    return spec.name, version, label


def _spec(name: str, version: int, signature: str) -> pb.ModelSpec:
    spec = pb.ModelSpec(name=name, signature_name=signature)
    spec.version.value = version
    return spec


class PredictionApi(pb_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` on top of the service. Runs on the event loop."""

    def __init__(self, service: Service) -> None:
        self._service = service

    @maps_errors
    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        name, version, label = model_of(request.model_spec)
        signature = request.model_spec.signature_name or "serving_default"
        if self._service.takes_tensors(name, version, label):
            return await self._predict_tensors(request, name, version, label, signature, context)

        async def parse(model: ModelMetadata) -> tuple[Batch, int]:
            _check_filter(request.output_filter, OUTPUTS)
            array = to_array(_only_input(request, model), f"input {model.input_name!r}")
            if model.kind in _ENCODED:
                if array.dtype != object:
                    raise InvalidInput(
                        f"input {model.input_name!r}: a {model.kind} model takes DT_STRING "
                        "(encoded files or UTF-8 texts)"
                    )
                if array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
                    raise InvalidInput(
                        f"input {model.input_name!r}: shape must be [N], got {list(array.shape)}"
                    )
                return Batch(images=list(array.reshape(-1))), model.top_k
            if array.dtype == object or array.dtype == bool:
                raise InvalidInput(f"input {model.input_name!r}: a features model takes DT_FLOAT")
            return Batch(features=array.astype(np.float32)), model.top_k

        scores, k = await self._service.predict(
            "tfs_grpc", name, version, parse, deadline_of(context), label
        )
        order = np.argsort(-scores.probabilities, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores.probabilities, order, axis=1)
        labels = np.asarray(scores.labels, dtype=object)[order]
        answers = {"classes": to_proto(labels), "scores": to_proto(top.astype(np.float32))}
        wanted = request.output_filter or OUTPUTS
        return pb.PredictResponse(
            model_spec=_spec(scores.model_name, scores.model_version, signature),
            outputs={k: v for k, v in answers.items() if k in wanted},
        )

    async def _predict_tensors(
        self,
        request: pb.PredictRequest,
        name: str,
        version: int,
        label: str,
        signature: str,
        context: grpc.aio.ServicerContext,
    ) -> pb.PredictResponse:
        async def parse(model: ModelMetadata) -> tuple[Batch, dict[str, str]]:
            outputs = {t.name: t.datatype for t in model.outputs}
            _check_filter(request.output_filter, tuple(outputs))
            known = {t.name for t in model.inputs}
            tensors = {}
            for key, tensor in request.inputs.items():
                if key not in known:
                    raise InvalidInput(f"unknown input {key!r}: the model takes {sorted(known)}")
                tensors[key] = to_array(tensor, f"input {key!r}")
            return Batch(tensors=tensors), outputs

        answer, datatypes = await self._service.infer(
            "tfs_grpc", name, version, parse, deadline_of(context), label
        )
        wanted = request.output_filter or list(answer.tensors)
        return pb.PredictResponse(
            model_spec=_spec(answer.model_name, answer.model_version, signature),
            outputs={
                k: to_proto(np.asarray(v), datatypes.get(k))
                for k, v in answer.tensors.items()
                if k in wanted
            },
        )

    @maps_errors
    async def Classify(
        self, request: pb.ClassificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassificationResponse:
        name, version, label = model_of(request.model_spec)

        async def parse(model: ModelMetadata) -> ClassifyRequest:
            examples, context_features = _examples(request.input)
            return ClassifyRequest(
                tuple(
                    _example(model, e, context_features, f"examples[{i}]")
                    for i, e in enumerate(examples)
                )
            )

        results = await self._service.classify(
            "tfs_grpc", name, version, parse, deadline_of(context), label
        )
        response = pb.ClassificationResponse(
            model_spec=_spec(
                results[0].model_name,
                results[0].model_version,
                request.model_spec.signature_name or "serving_default",
            )
        )
        for result in results:
            response.result.classifications.add(
                classes=[pb.Class(label=p.name, score=p.score) for p in result.predictions]
            )
        return response

    async def Regress(
        self, request: pb.RegressionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegressionResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "Regress is not served: pyserving models are classifiers or tensor models; use Predict",
        )
        raise AssertionError  # unreachable: abort raises

    async def MultiInference(
        self, request: pb.MultiInferenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.MultiInferenceResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "MultiInference is not served: send one Classify or Predict per model",
        )
        raise AssertionError  # unreachable: abort raises

    @maps_errors
    async def GetModelMetadata(
        self, request: pb.GetModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelMetadataResponse:
        name, version, label = model_of(request.model_spec)
        if "signature_def" not in request.metadata_field:
            raise InvalidInput(
                'metadata_field must include "signature_def" (the one metadata there is)'
            )
        model = self._service.metadata(name, version, label)
        response = pb.GetModelMetadataResponse(model_spec=_spec(model.name, model.version, ""))
        response.metadata["signature_def"].Pack(signature_defs(model))
        return response


def signature_defs(model: ModelMetadata) -> pb.SignatureDefMap:
    """The model's signatures as TF Serving describes them: `serving_default` (Predict),
    and for a classifier `classify` too (Classify, on tf.Examples)."""
    signatures = pb.SignatureDefMap()
    if model.answers == "tensors":
        signatures.signature_def["serving_default"].CopyFrom(
            tf.SignatureDef(
                inputs={t.name: tensor_info(t.name, t.datatype, t.shape) for t in model.inputs},
                outputs={t.name: tensor_info(t.name, t.datatype, t.shape) for t in model.outputs},
                method_name=PREDICT,
            )
        )
        return signatures
    outputs = {
        "classes": tensor_info("classes", "BYTES", (-1, model.top_k)),
        "scores": tensor_info("scores", "FP32", (-1, model.top_k)),
    }
    datatype = "BYTES" if model.input_datatype == "BYTES" else "FP32"
    predict_input = tensor_info(model.input_name, datatype, model.input_shape)
    signatures.signature_def["serving_default"].CopyFrom(
        tf.SignatureDef(
            inputs={model.input_name: predict_input}, outputs=outputs, method_name=PREDICT
        )
    )
    signatures.signature_def["classify"].CopyFrom(
        tf.SignatureDef(
            inputs={"inputs": tensor_info("inputs", "BYTES", (-1,))},
            outputs=outputs,
            method_name=CLASSIFY,
        )
    )
    return signatures


class ModelServiceApi(pb_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService` on top of the service. Runs on the event loop."""

    def __init__(self, service: Service) -> None:
        self._service = service

    @maps_errors
    async def GetModelStatus(
        self, request: pb.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelStatusResponse:
        name, version, label = model_of(request.model_spec)
        if not name:
            raise InvalidInput("model_spec.name is required")
        version = self._service.version_of(name, version, label)
        (model,) = self._service.model_status(name)
        versions = [v for v in model.versions if not version or v.version == version]
        if not versions:
            raise InvalidInput(f"model {name!r} has no version {version}")
        response = pb.GetModelStatusResponse()
        for v in reversed(versions):
            failed = v.state == "FAILED"
            response.model_version_status.add(
                version=v.version,
                state=pb.ModelVersionStatus.END
                if failed
                else getattr(pb.ModelVersionStatus, v.state),
                status=pb.StatusProto(
                    error_code=grpc.StatusCode.UNKNOWN.value[0] if failed else 0,
                    error_message=v.error,
                ),
            )
        return response

    async def HandleReloadConfigRequest(
        self, request: pb.ReloadConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadConfigResponse:
        """Serve the request's model list; as in TF Serving, the outcome is in `status`."""
        try:
            models, default = models_of(request.config, Path.cwd(), "ReloadConfigRequest")
            await self._service.replace_models(models, default)
        except (ConfigError, PyservingError) as exc:
            code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            return pb.ReloadConfigResponse(
                status=pb.StatusProto(error_code=code, error_message=str(exc))
            )
        return pb.ReloadConfigResponse(status=pb.StatusProto(error_code=0))


def _check_filter(wanted: Any, outputs: tuple[str, ...]) -> None:
    for name in wanted:
        if name not in outputs:
            raise InvalidInput(
                f"output_filter: unknown output {name!r}; the model has {list(outputs)}"
            )


def _only_input(request: pb.PredictRequest, model: ModelMetadata) -> tf.TensorProto:
    """The classifier's one input: under its name, or the only one given."""
    if model.input_name in request.inputs:
        if len(request.inputs) > 1:
            raise InvalidInput(
                f"model {model.name!r} takes one input, {model.input_name!r}; got "
                f"{sorted(request.inputs)}"
            )
        return request.inputs[model.input_name]
    if len(request.inputs) != 1:
        raise InvalidInput(
            f"model {model.name!r} takes one input named {model.input_name!r}; got "
            f"{sorted(request.inputs) or 'none'}"
        )
    return next(iter(request.inputs.values()))


def _examples(request_input: pb.Input) -> tuple[list[tf.Example], dict[str, tf.Feature]]:
    which = request_input.WhichOneof("kind")
    if which == "example_list":
        examples, context = list(request_input.example_list.examples), {}
    elif which == "example_list_with_context":
        with_context = request_input.example_list_with_context
        examples = list(with_context.examples)
        context = dict(with_context.context.features.feature)
    else:
        raise InvalidInput("input must hold an example_list or example_list_with_context")
    if not examples:
        raise InvalidInput("the request holds no examples")
    if len(examples) > MAX_EXAMPLES:
        raise InvalidInput(f"at most {MAX_EXAMPLES} examples per request")
    return examples, context


def _example(
    model: ModelMetadata, example: tf.Example, context: dict[str, tf.Feature], where: str
) -> Example:
    features = {**context, **example.features.feature}
    if model.kind in _ENCODED:
        byte_features = {k: f for k, f in features.items() if f.WhichOneof("kind") == "bytes_list"}
        key = model.input_name if model.input_name in byte_features else None
        if key is None and len(byte_features) == 1:
            (key,) = byte_features
        if key is None or len(byte_features[key].bytes_list.value) != 1:
            raise InvalidInput(
                f"{where} must hold one bytes feature {model.input_name!r} (the encoded file "
                "or UTF-8 text)"
            )
        return Example(image=byte_features[key].bytes_list.value[0])
    values = {}
    for key, feature in features.items():
        which = feature.WhichOneof("kind")
        listed = (
            list(getattr(feature, which).value) if which in ("float_list", "int64_list") else []
        )
        if len(listed) != 1:
            raise InvalidInput(f"{where}.{key} must be one float (float_list or int64_list)")
        values[key] = float(listed[0])
    return Example(features=values)
