"""TensorFlow Serving's REST API shapes on the REST port, so TF Serving scripts keep working.

    GET  /v1/models/{name}[/versions/{v}]            status
    GET  /v1/models/{name}[/versions/{v}]/metadata   signature
    POST /v1/models/{name}[/versions/{v}]:classify   {"examples": [...]} → {"results": ...}
    POST /v1/models/{name}[/versions/{v}]:predict    {"instances": [...]} → {"predictions": ...}

`:classify` also takes a raw image body (`Content-Type: image/*`) or a multipart upload, so
`curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'` works.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pyserving import metrics
from pyserving.errors import InvalidInput, ModelNotFound, RequestTooLarge
from pyserving.http_api import parse_body, read_body
from pyserving.results import Classification, VersionStatus
from pyserving.service import Service

_PATH = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>classify|predict))?$"
)
MAX_EXAMPLES = 256


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
                "{name}[/versions/{v}][/metadata|:classify|:predict]"
            )
        name, verb = match["name"], match["verb"]
        version = int(match["version"] or 0)
        if request.method == "GET" and verb is None:
            if match["metadata"]:
                return self._metadata(name, version)
            return self._status(name, version)
        if request.method == "POST" and verb == "classify":
            return await self._classify(request, name, version)
        if request.method == "POST" and verb == "predict":
            return await self._predict(request, name, version)
        allowed = "GET" if verb is None else "POST"
        return JSONResponse(
            {"error": f"use {allowed} for this route"}, status_code=405, headers={"Allow": allowed}
        )

    def _status(self, name: str, version: int) -> Response:
        (model,) = self._service.model_status(name)
        versions = [v for v in model.versions if not version or v.version == version]
        if not versions:
            raise ModelNotFound(f"model {name!r} has no version {version}")
        return JSONResponse({"model_version_status": [_tf_status(v) for v in reversed(versions)]})

    def _metadata(self, name: str, version: int) -> Response:
        servable = self._service.servable(name, version)
        sig = servable.signature
        if sig.kind == "image":
            inputs = {
                sig.input_name: {
                    "dtype": "DT_STRING",
                    "tensor_shape": {"dim": [{"size": "-1"}]},
                    "name": sig.input_name,
                }
            }
        else:
            inputs = {
                f: {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": f}
                for f in sig.features
            }
        outputs = {
            "classes": {
                "dtype": "DT_STRING",
                "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(sig.top_k)}]},
                "name": "classes",
            },
            "scores": {
                "dtype": "DT_FLOAT",
                "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(sig.top_k)}]},
                "name": "scores",
            },
        }
        signature = {
            "inputs": inputs,
            "outputs": outputs,
            "method_name": "tensorflow/serving/classify",
        }
        return JSONResponse(
            {
                "model_spec": {
                    "name": servable.name,
                    "signature_name": "",
                    "version": str(servable.version),
                },
                "metadata": {
                    "signature_def": {
                        "signature_def": {"serving_default": signature, "classify": signature}
                    },
                    "engine": {
                        "name": servable.engine_info.name,
                        "precision": servable.precision,
                    },
                },
            }
        )

    async def _classify(self, request: Request, name: str, version: int) -> Response:
        with metrics.track("tfs_rest", self._service.manager.configured) as tracked:
            tracked.model = name
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            top_k = _top_k(request.query_params.get("top_k"))
            if kind.startswith("image/") or kind == "application/octet-stream":
                images = [await read_body(request, self._limit)]
                results = await self._classify_images(name, version, images, top_k)
            elif kind == "multipart/form-data":
                images = await self._uploads(request)
                results = await self._classify_images(name, version, images, top_k)
            else:
                doc = await parse_body(await read_body(request, self._limit), _json)
                examples = doc.get("examples")
                if not isinstance(examples, list) or not examples:
                    raise InvalidInput("`examples` must be a non-empty list")
                if len(examples) > MAX_EXAMPLES:
                    raise InvalidInput(f"at most {MAX_EXAMPLES} examples per request")
                top_k = _top_k(doc.get("top_k", top_k))
                results = await asyncio.gather(
                    *(
                        self._classify_example(name, version, e, i, top_k)
                        for i, e in enumerate(examples)
                    )
                )
            tracked.version = str(results[0].model_version)
        return JSONResponse(
            {
                "results": [[[p.name, p.score] for p in r.predictions] for r in results],
                "model_name": results[0].model_name,
                "model_version": str(results[0].model_version),
            }
        )

    async def _classify_images(
        self, name: str, version: int, images: list[bytes], top_k: int
    ) -> list[Classification]:
        return list(
            await asyncio.gather(
                *(self._service.classify(name, version, image=i, k=top_k) for i in images)
            )
        )

    async def _classify_example(
        self, name: str, version: int, example: Any, index: int, top_k: int
    ) -> Classification:
        where = f"examples[{index}]"
        if not isinstance(example, dict) or not example:
            raise InvalidInput(f"{where} must be an object of named features")
        servable = self._service.servable(name, version)
        if servable.signature.kind == "image":
            image = _example_image(example, servable.signature.input_name, where)
            return await self._service.classify(name, version, image=image, k=top_k)
        features = {k: _number(v, f"{where}.{k}") for k, v in example.items()}
        return await self._service.classify(name, version, features=features, k=top_k)

    async def _predict(self, request: Request, name: str, version: int) -> Response:
        with metrics.track("tfs_rest", self._service.manager.configured) as tracked:
            tracked.model = name
            doc = await parse_body(await read_body(request, self._limit), _json)
            instances = doc.get("instances")
            if instances is None and isinstance(doc.get("inputs"), list):
                instances = doc["inputs"]
            if not isinstance(instances, list) or not instances:
                raise InvalidInput("`instances` must be a non-empty list")
            if len(instances) > MAX_EXAMPLES:
                raise InvalidInput(f"at most {MAX_EXAMPLES} instances per request")
            servable = self._service.servable(name, version)
            sig = servable.signature
            if sig.kind == "image":
                images = [
                    _instance_image(x, sig.input_name, f"instances[{i}]")
                    for i, x in enumerate(instances)
                ]
                scores = await self._service.predict(name, version, images=images)
            else:
                rows = [
                    _feature_row(x, sig.features, f"instances[{i}]")
                    for i, x in enumerate(instances)
                ]
                scores = await self._service.predict(
                    name, version, features=np.array(rows, dtype=np.float32)
                )
            tracked.version = str(scores.model_version)
        return JSONResponse({"predictions": scores.probabilities.tolist()})

    async def _uploads(self, request: Request) -> list[bytes]:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            raise RequestTooLarge(f"the upload is over the limit of {self._limit:,} bytes")
        form = await request.form(max_files=MAX_EXAMPLES, max_part_size=self._limit)
        images = []
        for _, value in form.multi_items():
            if not isinstance(value, str):
                images.append(await value.read())
        if not images:
            raise InvalidInput("the multipart upload holds no file")
        return images


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


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object")
    return doc


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
        raise InvalidInput(f'{where} must hold the image as {{"{input_name}": {{"b64": "..."}}}}')
    text = example[key]["b64"]
    if not isinstance(text, str):
        raise InvalidInput(f"{where}.{key}.b64 must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}.{key}.b64 is not valid base64: {exc}") from exc


def _instance_image(instance: Any, input_name: str, where: str) -> bytes:
    """`{"b64": ...}` itself, or an object holding it under the input's name."""
    if isinstance(instance, dict) and "b64" in instance:
        instance = {input_name: instance}
    if not isinstance(instance, dict):
        raise InvalidInput(f'{where} must be {{"b64": "..."}}')
    return _example_image(instance, input_name, where)


def _number(value: Any, where: str) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidInput(f"{where} must be finite")
    return float(value)


def _feature_row(instance: Any, names: tuple[str, ...], where: str) -> list[float]:
    if isinstance(instance, dict):
        missing = [n for n in names if n not in instance]
        unknown = sorted(set(instance) - set(names))
        if missing or unknown:
            raise InvalidInput(
                f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}; "
                f"the model takes {', '.join(names)}"
            )
        return [_number(instance[n], f"{where}.{n}") for n in names]
    if isinstance(instance, list) and len(instance) == len(names):
        return [_number(v, f"{where}[{j}]") for j, v in enumerate(instance)]
    raise InvalidInput(
        f"{where} must be an object or a list of {len(names)} numbers ({', '.join(names)})"
    )
