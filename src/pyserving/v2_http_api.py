"""Open Inference Protocol v2 over REST, with the binary tensor data extension.

BYTES elements in JSON are base64 strings (or `{"b64": ...}` objects), since encoded
images are not text. With the binary extension (`Inference-Header-Content-Length`), inputs
and outputs travel as raw bytes after the JSON header, as tritonclient sends them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pyserving import metrics, oip
from pyserving.errors import InvalidInput, PyservingError
from pyserving.http_api import parse_body, read_body
from pyserving.service import Service

HEADER_LENGTH = "inference-header-content-length"


class V2Routes:
    """Handlers for `/v2/...`; parse, call `oip`, write JSON (and binary) back."""

    def __init__(self, service: Service, ready: Callable[[], bool], max_request_bytes: int):
        self._service = service
        self._ready = ready
        self._limit = max_request_bytes

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse(oip.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        servable = self._service.servable(*_model(request))
        versions = self._service.manager.available_versions(servable.name)
        return JSONResponse(oip.model_metadata(servable, versions))

    async def model_ready(self, request: Request) -> Response:
        try:
            self._service.servable(*_model(request))
        except PyservingError as exc:
            return JSONResponse({"ready": False, "error": str(exc)}, status_code=exc.http_status)
        ok = self._ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def infer(self, request: Request) -> Response:
        name, version = _model(request)
        with metrics.track("v2_rest", self._service.manager.configured) as tracked:
            tracked.model = name
            header_length = request.headers.get(HEADER_LENGTH)
            doc, inputs = await parse_body(
                await read_body(request, self._limit), lambda b: _parse(b, header_length)
            )
            outputs = _requested_outputs(doc)
            loop_deadline = _deadline(request)
            scores, tensors = await oip.infer(
                self._service, name, version, inputs, outputs, loop_deadline
            )
            tracked.version = str(scores.model_version)
        head: dict[str, Any] = {
            "model_name": scores.model_name,
            "model_version": str(scores.model_version),
            "outputs": [],
        }
        if isinstance(doc.get("id"), str):
            head["id"] = doc["id"]
        chunks: list[bytes] = []
        for tensor in tensors:
            out: dict[str, Any] = {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": tensor.shape,
            }
            if tensor.datatype == "BYTES":
                raw = oip.encode_bytes_tensor(tensor.elements)
                values: list[Any] = [e.decode() for e in tensor.elements]
            else:
                assert tensor.array is not None
                raw = tensor.array.astype("<f4").tobytes()
                values = tensor.array.ravel().tolist()
            if tensor.binary:
                out["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            else:
                out["data"] = values
            head["outputs"].append(out)
        if not chunks:
            return JSONResponse(head)
        header = json.dumps(head).encode()
        return Response(
            header + b"".join(chunks),
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(header))},
        )


def _model(request: Request) -> tuple[str, int]:
    version = request.path_params.get("version", "")
    return request.path_params["name"], oip.parse_version(version)


def _deadline(request: Request) -> float | None:
    timeout = request.headers.get("timeout") or request.query_params.get("timeout")
    if not timeout:
        return None
    try:
        seconds = float(timeout)
    except ValueError:
        raise InvalidInput(f"timeout must be a number of seconds, got {timeout!r}") from None
    return asyncio.get_running_loop().time() + seconds


def _parse(body: bytes, header_length: str | None) -> tuple[dict[str, Any], list[oip.InputTensor]]:
    """The JSON head and the input tensors, base64 and binary data decoded."""
    doc, binary = _split(body, header_length)
    return doc, _inputs(doc, binary)


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        head, binary = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {header_length!r} does not fit a body of "
                f"{len(body)} bytes"
            )
        head, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        doc = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object with an `inputs` list")
    return doc, binary


def _inputs(doc: dict[str, Any], binary: bytes) -> list[oip.InputTensor]:
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("`inputs` must be a non-empty list of tensors")
    out, offset = [], 0
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object with name, shape, datatype, data")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"{where}.name is missing")
        if not isinstance(datatype, str):
            raise InvalidInput(f"{where}.datatype is missing")
        shape = oip.check_shape(item.get("shape", []))
        params = item.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"{where}.parameters.binary_data_size does not fit the body")
            data: Any = binary[offset : offset + size]
            offset += size
        elif "data" in item:
            data = item["data"]
        else:
            raise InvalidInput(f"{where}.data is missing")
        if datatype == "BYTES":
            elements = (
                oip.decode_bytes_tensor(data, where)
                if isinstance(data, bytes)
                else _json_bytes(data, where)
            )
            out.append(oip.InputTensor(name, datatype, shape, elements=elements))
        else:
            array = oip.numeric_array(data, datatype, shape, f"{where} ({name!r})")
            out.append(oip.InputTensor(name, datatype, shape, array=array))
    return out


def _json_bytes(data: Any, where: str) -> list[bytes]:
    flat = data if isinstance(data, list) else [data]
    while flat and all(isinstance(x, list) for x in flat):
        flat = [y for x in flat for y in x]
    out = []
    for j, element in enumerate(flat):
        text = element.get("b64") if isinstance(element, dict) else element
        if not isinstance(text, str):
            raise InvalidInput(f'{where}.data[{j}] must be a base64 string or {{"b64": ...}}')
        try:
            out.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"{where}.data[{j}] is not valid base64: {exc}") from exc
    return out


def _requested_outputs(doc: dict[str, Any]) -> list[oip.RequestedOutput]:
    params = doc.get("parameters") or {}
    all_binary = bool(isinstance(params, dict) and params.get("binary_data_output"))
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidInput("`outputs` must be a list")
    if not outputs:
        return [oip.RequestedOutput(oip.OUTPUT_NAME, binary=all_binary)]
    out = []
    for i, item in enumerate(outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"outputs[{i}].name is missing")
        p = item.get("parameters") or {}
        if not isinstance(p, dict):
            raise InvalidInput(f"outputs[{i}].parameters must be an object")
        k = p.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InvalidInput(f"outputs[{i}].parameters.classification must be an integer ≥ 0")
        binary = bool(p.get("binary_data", all_binary))
        out.append(oip.RequestedOutput(item["name"], k, binary))
    return out
