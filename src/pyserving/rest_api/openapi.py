"""The OpenAPI 3 description of the REST port, served at `/openapi.json`."""

from __future__ import annotations

from typing import Any

import pyserving

_ERROR = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_JSON_OBJECT: dict[str, Any] = {"type": "object"}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
_LABEL = {
    "name": "label",
    "in": "path",
    "required": True,
    "description": "a version label of the model's config (TF Serving's version_labels)",
    "schema": {"type": "string"},
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BYTES",
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
            ],
        },
        "parameters": _JSON_OBJECT,
        "data": {
            "type": "array",
            "description": "BYTES: base64 strings for images, text for text and tensor models; "
            "numbers (true/false for BOOL) otherwise",
        },
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _JSON_OBJECT,
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "classification": {"type": "integer", "minimum": 0},
                            "binary_data": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
_CLASSIFY_REQUEST = {
    "type": "object",
    "required": ["examples"],
    "properties": {
        "examples": {"type": "array", "items": _JSON_OBJECT},
        "top_k": {"type": "integer", "minimum": 0},
    },
}
_EXPLAIN_REQUEST = {
    "type": "object",
    "required": ["examples"],
    "properties": {
        "examples": {"type": "array", "items": _JSON_OBJECT, "minItems": 1, "maxItems": 1},
        "class": {"type": "string", "description": "the class to explain; default: the top"},
    },
}
_CLASS_QUERY = {
    "name": "class",
    "in": "query",
    "required": False,
    "description": "the class to explain (or `class` in the JSON body); default: the top class",
    "schema": {"type": "string"},
}
_PREDICT_REQUEST = {
    "type": "object",
    "description": "rows (`instances`), or for a tensor model named columns (`inputs`)",
    "properties": {"instances": {"type": "array"}, "inputs": {}},
}


def _ok(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _JSON_OBJECT}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def _get(summary: str, *params: dict[str, Any], codes: tuple[int, ...] = (404,)) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": list(params),
            "responses": {"200": _ok(summary), **_errors(400, *codes)},
        }
    }


def _post(summary: str, schema: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": list(params),
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {"200": _ok(summary), **_errors(400, 404, 413, 429, 503, 504)},
        }
    }


def _classify(*params: dict[str, Any]) -> dict[str, Any]:
    operation = _post("TF Serving classify", _CLASSIFY_REQUEST, *params)
    operation["post"]["requestBody"]["content"]["image/jpeg"] = {
        "schema": {"type": "string", "format": "binary"}
    }
    return operation


def _explain(*params: dict[str, Any]) -> dict[str, Any]:
    operation = _post(
        "Why this class: the input's parts, each weighted by how much hiding it lowers the "
        "class's probability (pyserving's own)",
        _EXPLAIN_REQUEST,
        *params,
        _CLASS_QUERY,
    )
    operation["post"]["requestBody"]["content"]["image/jpeg"] = {
        "schema": {"type": "string", "format": "binary"}
    }
    return operation


def document(models: list[str]) -> dict[str, Any]:
    """The OpenAPI document of a server serving `models`."""
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "a model this server serves",
        "schema": {"type": "string", "enum": models} if models else {"type": "string"},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "pyserving REST API", "version": pyserving.__version__},
        "paths": {
            "/v2": _get("Server metadata (Open Inference Protocol v2)", codes=()),
            "/v2/health/live": _get("Liveness", codes=()),
            "/v2/health/ready": _get("Readiness", codes=(503,)),
            "/v2/models/{name}": _get("Model metadata", name),
            "/v2/models/{name}/versions/{version}": _get("Model version metadata", name, _VERSION),
            "/v2/models/{name}/ready": _get("Model readiness", name, codes=(404, 503)),
            "/v2/models/{name}/versions/{version}/ready": _get(
                "Model version readiness", name, _VERSION, codes=(404, 503)
            ),
            "/v2/models/{name}/config": _get("Model configuration (Triton's extension)", name),
            "/v2/models/{name}/versions/{version}/config": _get(
                "Model version configuration (Triton's extension)", name, _VERSION
            ),
            "/v2/models/{name}/infer": _post("Inference", _INFER_REQUEST, name),
            "/v2/models/{name}/versions/{version}/infer": _post(
                "Inference on one version", _INFER_REQUEST, name, _VERSION
            ),
            "/v1/models/{name}": _get("Model status (TF Serving)", name),
            "/v1/models/{name}/versions/{version}": _get(
                "Model version status (TF Serving)", name, _VERSION
            ),
            "/v1/models/{name}/metadata": _get("Model metadata (TF Serving)", name),
            "/v1/models/{name}/versions/{version}/metadata": _get(
                "Model version metadata (TF Serving)", name, _VERSION
            ),
            "/v1/models/{name}:classify": _classify(name),
            "/v1/models/{name}/versions/{version}:classify": _classify(name, _VERSION),
            "/v1/models/{name}:predict": _post("TF Serving predict", _PREDICT_REQUEST, name),
            "/v1/models/{name}/versions/{version}:predict": _post(
                "TF Serving predict on one version", _PREDICT_REQUEST, name, _VERSION
            ),
            "/v1/models/{name}/labels/{label}": _get(
                "Labelled version status (TF Serving)", name, _LABEL
            ),
            "/v1/models/{name}/labels/{label}/metadata": _get(
                "Labelled version metadata (TF Serving)", name, _LABEL
            ),
            "/v1/models/{name}/labels/{label}:classify": _classify(name, _LABEL),
            "/v1/models/{name}/labels/{label}:predict": _post(
                "TF Serving predict on a labelled version", _PREDICT_REQUEST, name, _LABEL
            ),
            "/v1/models/{name}:explain": _explain(name),
            "/v1/models/{name}/versions/{version}:explain": _explain(name, _VERSION),
            "/v1/models/{name}/labels/{label}:explain": _explain(name, _LABEL),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
