"""TensorFlow Serving's REST API shapes on the REST port, so TF Serving scripts keep working.

    GET  /v1/models/{name}[/versions/{v}]            status
    GET  /v1/models/{name}[/versions/{v}]/metadata   signature
    POST /v1/models/{name}[/versions/{v}]:classify   {"examples": [...]} → {"results": ...}
    POST /v1/models/{name}[/versions/{v}]:predict    {"instances": [...]} → {"predictions": ...}
    POST /v1/models/{name}[/versions/{v}]:explain    one input, as :classify takes it → why

`:explain` (pyserving's own, not TF Serving's) names the class to explain in `"class"` of
the JSON body or `?class=` (default: the top class) and answers `{"class": {...}, "parts":
[...], ...}`: each part of the input with its weight (see docs/explanations.md).

`/labels/{label}` in place of `/versions/{v}` names a version by its label, on every route.

`:classify` also takes a raw image body (`Content-Type: image/*`), a raw audio clip
(`audio/*`), a multipart upload, or for a text model a raw `text/plain` body, so `curl
--data-binary @cat.jpg -H 'Content-Type: image/jpeg'` works. Text models take
`{"instances": ["..."]}` and `{"examples": [{"text": "..."}]}`; audio models take clips
as images are taken, `{"b64": ...}`.

A tensor model takes `:predict` only, in either of TF Serving's formats, rows or columns
(see `rest_api.tfs_tensors`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pyserving.core.service import Batch, Service
from pyserving.errors import InvalidInput, ModelNotFound, RequestTooLarge
from pyserving.rest_api.body import b64decode, json_object, parse_body, read_body
from pyserving.rest_api.tfs_tensors import read_tensors, tensor_answer, tensor_info
from pyserving.results import (
    ClassifyRequest,
    Example,
    ModelMetadata,
    VersionStatus,
)

_PATH = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>classify|predict|explain))?$"
)
MAX_EXAMPLES = 256
_RAW_TYPES = ("application/octet-stream", "text/plain")  # besides image/* and audio/*
_ENCODED_KINDS = ("image", "audio")  # kinds whose inputs are encoded files: {"b64": ...}
_VERBS = (
    ("", "GET"),
    ("/metadata", "GET"),
    (":classify", "POST"),
    (":predict", "POST"),
    (":explain", "POST"),
)
# The fields of an explanation's part that mean something for each kind.
_PART_FIELDS = {
    "image": ("row", "column"),
    "audio": ("start", "end"),
    "text": ("name",),
    "features": ("name",),
}
# Every path `dispatch` serves, as OpenAPI templates, and the method each takes.
PATHS = {
    f"/v1/models/{{name}}{version}{suffix}": method
    for version in ("", "/versions/{version}", "/labels/{label}")
    for suffix, method in _VERBS
}


class TfServingRoutes:
    """Handlers for `/v1/models/...`."""

    def __init__(self, service: Service, max_request_bytes: int) -> None:
        self._service = service
        self._limit = max_request_bytes

    async def dispatch(self, request: Request) -> Response:
        match = _PATH.match(request.path_params["rest"])
        if match is None:
            raise ModelNotFound(
                f"no such route /v1/models/{request.path_params['rest']}; expected "
                "{name}[/versions/{v}|/labels/{label}][/metadata|:classify|:predict|:explain]"
            )
        name, verb = match["name"], match["verb"]
        allowed = "GET" if verb is None else "POST"
        if request.method != allowed:
            raise HTTPException(405, f"use {allowed} for this route", headers={"Allow": allowed})
        version, label = int(match["version"] or 0), match["label"] or ""
        if verb is None:
            if match["metadata"]:
                return self._metadata(name, version, label)
            return self._status(name, self._service.version_of(name, version, label))
        if verb == "classify":
            return await self._classify(request, name, version, label)
        if verb == "explain":
            return await self._explain(request, name, version, label)
        return await self._predict(request, name, version, label)

    def _status(self, name: str, version: int) -> Response:
        (model,) = self._service.model_status(name)
        versions = [v for v in model.versions if not version or v.version == version]
        if not versions:
            raise ModelNotFound(f"model {name!r} has no version {version}")
        return JSONResponse({"model_version_status": [_tf_status(v) for v in reversed(versions)]})

    def _metadata(self, name: str, version: int, label: str) -> Response:
        model = self._service.metadata(name, version, label)
        if model.answers == "tensors":
            predict = {
                "inputs": {t.name: tensor_info(t) for t in model.inputs},
                "outputs": {t.name: tensor_info(t) for t in model.outputs},
                "method_name": "tensorflow/serving/predict",
            }
            return _metadata_response(model, {"serving_default": predict})
        if model.input_datatype == "BYTES":
            inputs = {
                model.input_name: {
                    "dtype": "DT_STRING",
                    "tensor_shape": {"dim": [{"size": "-1"}]},
                    "name": model.input_name,
                }
            }
        else:
            inputs = {
                f: {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": f}
                for f in model.features
            }
        outputs = {
            "classes": {
                "dtype": "DT_STRING",
                "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(model.top_k)}]},
                "name": "classes",
            },
            "scores": {
                "dtype": "DT_FLOAT",
                "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(model.top_k)}]},
                "name": "scores",
            },
        }
        signature = {
            "inputs": inputs,
            "outputs": outputs,
            "method_name": "tensorflow/serving/classify",
        }
        return _metadata_response(model, {"serving_default": signature, "classify": signature})

    async def _classify(self, request: Request, name: str, version: int, label: str) -> Response:
        async def parse(model: ModelMetadata) -> ClassifyRequest:
            examples, doc = await self._examples(request, model)
            return ClassifyRequest(
                examples, _top_k(doc.get("top_k", request.query_params.get("top_k")))
            )

        results = await self._service.classify("tfs_rest", name, version, parse, label=label)
        return JSONResponse(
            {
                "results": [[[p.name, p.score] for p in r.predictions] for r in results],
                "model_name": results[0].model_name,
                "model_version": str(results[0].model_version),
            }
        )

    async def _examples(
        self, request: Request, model: ModelMetadata
    ) -> tuple[tuple[Example, ...], dict[str, Any]]:
        """The examples of a :classify or :explain body, and its JSON document (if any)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind.startswith(("image/", "audio/")) or kind in _RAW_TYPES:
            return (Example(image=await read_body(request, self._limit)),), {}
        if kind == "multipart/form-data":
            return tuple(Example(image=i) for i in await self._uploads(request)), {}
        doc = await parse_body(await read_body(request, self._limit), json_object)
        examples = doc.get("examples")
        if "examples" not in doc and "instances" in doc:
            raise InvalidInput(
                ':classify takes {"examples": [...]}; {"instances": [...]} is the body '
                "of :predict: send it there, or its items as examples here"
            )
        if not isinstance(examples, list) or not examples:
            raise InvalidInput("`examples` must be a non-empty list")
        if len(examples) > MAX_EXAMPLES:
            raise InvalidInput(f"at most {MAX_EXAMPLES} examples per request")
        return tuple(_example(model, e, f"examples[{i}]") for i, e in enumerate(examples)), doc

    async def _explain(self, request: Request, name: str, version: int, label: str) -> Response:
        async def parse(model: ModelMetadata) -> tuple[Example, str]:
            examples, doc = await self._examples(request, model)
            if len(examples) != 1:
                raise InvalidInput(f":explain takes one input, got {len(examples)}")
            class_name = doc.get("class", request.query_params.get("class", ""))
            if not isinstance(class_name, str):
                raise InvalidInput(f"`class` must be a class name (a string), got {class_name!r}")
            return examples[0], class_name

        result = await self._service.explain("rest_explain", name, version, parse, label=label)
        c = result.explained
        fields = _PART_FIELDS.get(result.kind, ("name",))
        answer: dict[str, Any] = {
            "model_name": result.model_name,
            "model_version": str(result.model_version),
            "class": {"name": c.name, "score": c.score, "index": c.index},
            "kind": result.kind,
            "method": result.method,
            "parts": [
                {"weight": p.weight, **{f: getattr(p, f) for f in fields}} for p in result.parts
            ],
        }
        if result.grid != (0, 0):
            answer["grid"] = {"rows": result.grid[0], "columns": result.grid[1]}
        return JSONResponse(answer)

    async def _predict(self, request: Request, name: str, version: int, label: str) -> Response:
        if self._service.takes_tensors(name, version, label):
            return await self._predict_tensors(request, name, version, label)

        async def parse(model: ModelMetadata) -> tuple[Batch, None]:
            doc = await parse_body(await read_body(request, self._limit), json_object)
            instances = doc.get("instances")
            if instances is None and isinstance(doc.get("inputs"), list):
                instances = doc["inputs"]
            if not isinstance(instances, list) or not instances:
                raise InvalidInput("`instances` must be a non-empty list")
            if len(instances) > MAX_EXAMPLES:
                raise InvalidInput(f"at most {MAX_EXAMPLES} instances per request")
            if model.kind == "text":
                texts = [
                    _instance_text(x, model.input_name, f"instances[{i}]")
                    for i, x in enumerate(instances)
                ]
                return Batch(images=texts), None
            if model.kind in _ENCODED_KINDS:
                images = [
                    _instance_image(x, model.input_name, f"instances[{i}]")
                    for i, x in enumerate(instances)
                ]
                return Batch(images=images), None
            rows = [_feature_row(x, f"instances[{i}]") for i, x in enumerate(instances)]
            return Batch(features=rows), None

        scores, _ = await self._service.predict("tfs_rest", name, version, parse, label=label)
        return JSONResponse({"predictions": scores.probabilities.tolist()})

    async def _predict_tensors(
        self, request: Request, name: str, version: int, label: str
    ) -> Response:
        async def parse(model: ModelMetadata) -> tuple[Batch, int | None]:
            body = await read_body(request, self._limit)
            tensors, rows = await parse_body(body, lambda b: read_tensors(model, json_object(b)))
            return Batch(tensors=tensors), rows

        answer, rows = await self._service.infer("tfs_rest", name, version, parse, label=label)
        body = json.dumps(tensor_answer(answer, rows), ensure_ascii=False, separators=(",", ":"))
        return Response(body, media_type="application/json")

    async def _uploads(self, request: Request) -> list[bytes]:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            raise RequestTooLarge(f"the upload is over the limit of {self._limit:,} bytes")
        images = []
        # `async with`: the uploads' spooled temporary files are closed when read.
        async with request.form(max_files=MAX_EXAMPLES, max_part_size=self._limit) as form:
            for _, value in form.multi_items():
                if not isinstance(value, str):
                    images.append(await value.read())
        if not images:
            raise InvalidInput("the multipart upload holds no file")
        return images


def _metadata_response(model: ModelMetadata, signatures: dict[str, Any]) -> Response:
    return JSONResponse(
        {
            "model_spec": {
                "name": model.name,
                "signature_name": "",
                "version": str(model.version),
            },
            "metadata": {
                "signature_def": {"signature_def": signatures},
                "engine": {"name": model.engine, "precision": model.precision},
                # the model's labels, label to version (int64 as a string, as TF's JSON)
                "version_labels": {label: str(v) for label, v in model.version_labels},
            },
        }
    )


def _tf_status(v: VersionStatus) -> dict[str, Any]:
    failed = v.state == "FAILED"
    status: dict[str, Any] = {
        "version": str(v.version),
        "state": "END" if failed else v.state,
        "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": v.error},
    }
    if v.engine:
        status["engine"] = {"name": v.engine, "precision": v.precision}
    return status


def _top_k(value: Any) -> int:
    if value is None or value == "":
        return 0
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"top_k must be a positive integer, got {value!r}") from None
    if k < 0:
        raise InvalidInput(f"top_k must be a positive integer, got {value!r}")
    return k


def _example_image(example: dict[str, Any], input_name: str, where: str) -> bytes:
    candidates = [k for k, v in example.items() if isinstance(v, dict) and "b64" in v]
    key = (
        input_name
        if input_name in candidates
        else (candidates[0] if len(candidates) == 1 else None)
    )
    if key is None:
        raise InvalidInput(f'{where} must hold the file as {{"{input_name}": {{"b64": "..."}}}}')
    return b64decode(example[key]["b64"], f"{where}.{key}.b64")


def _instance_image(instance: Any, input_name: str, where: str) -> bytes:
    """`{"b64": ...}` itself, or an object holding it under the input's name."""
    if isinstance(instance, dict) and "b64" in instance:
        instance = {input_name: instance}
    if not isinstance(instance, dict):
        raise InvalidInput(f'{where} must be {{"b64": "..."}}')
    return _example_image(instance, input_name, where)


def _instance_text(instance: Any, input_name: str, where: str) -> bytes:
    """A string, or an object holding one under the input's name, as UTF-8."""
    if isinstance(instance, dict) and len(instance) == 1:
        key = input_name if input_name in instance else next(iter(instance))
        instance = instance[key]
        where = f"{where}.{key}"
    if not isinstance(instance, str):
        raise InvalidInput(
            f'{where} must be a string of text, or {{"{input_name}": "..."}}, got '
            f"{type(instance).__name__}"
        )
    return instance.encode("utf-8", "surrogatepass")


def _number(value: Any, where: str) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidInput(f"{where} must be finite")
    return float(value)


def _example_shape(model: ModelMetadata) -> str:
    """What one example of `model` looks like, for error messages."""
    if model.kind == "text":
        return f'an object holding the text, e.g. {{"{model.input_name}": "..."}}'
    if model.kind in _ENCODED_KINDS:
        return f'an object holding the file, e.g. {{"{model.input_name}": {{"b64": "..."}}}}'
    names = ", ".join(f'"{n}": ...' for n in model.features[:2]) or '"NAME": 1.0'
    return f"an object of named features, e.g. {{{names}}}"


def _example(model: ModelMetadata, example: Any, where: str) -> Example:
    if not isinstance(example, dict) or not example:
        raise InvalidInput(f"{where} must be {_example_shape(model)}")
    if model.kind == "text":
        return Example(image=_instance_text(example, model.input_name, where))
    if model.kind in _ENCODED_KINDS:
        return Example(image=_example_image(example, model.input_name, where))
    return Example(features={k: _number(v, f"{where}.{k}") for k, v in example.items()})


def _feature_row(instance: Any, where: str) -> Mapping[str, float] | Sequence[float]:
    """Named features, or numbers in the model's order; the service checks them."""
    if isinstance(instance, dict):
        return {k: _number(v, f"{where}.{k}") for k, v in instance.items()}
    if isinstance(instance, list):
        return [_number(v, f"{where}[{j}]") for j, v in enumerate(instance)]
    raise InvalidInput(f"{where} must be an object of named features or a list of numbers")
