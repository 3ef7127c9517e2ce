"""Open Inference Protocol v2 over REST, with the binary tensor data extension.

BYTES elements in JSON are base64 strings (or `{"b64": ...}` objects), since encoded
images are not text; for a text model, and for a tensor model's string inputs, a JSON
string is the text itself. With the binary extension (`Inference-Header-Content-Length`),
inputs and outputs travel as raw bytes after the JSON header, as tritonclient sends them.
A tensor model's outputs are all returned unless the request names some; non-finite
floats are written as the JSON literals NaN and Infinity, as Python's json module does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pyserving.core import oip
from pyserving.core.service import Batch, Service
from pyserving.errors import InvalidInput, PyservingError
from pyserving.rest_api.body import b64decode, json_object, parse_body, read_body
from pyserving.results import ModelMetadata

HEADER_LENGTH = "inference-header-content-length"
_Parsed = tuple[dict[str, Any], list[oip.RequestedOutput]]


class V2Routes:
    """Handlers for `/v2/...`; parse, call `oip`, write JSON (and binary) back."""

    def __init__(self, service: Service, max_request_bytes: int):
        self._service = service
        self._limit = max_request_bytes

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse(oip.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(oip.model_metadata(self._service.metadata(*_model(request))))

    async def model_config(self, request: Request) -> Response:
        name, version = _model(request)
        model = self._service.metadata(name, version)
        return JSONResponse(oip.model_config(model, self._service.batching(name, version)))

    async def model_ready(self, request: Request) -> Response:
        try:
            ok = self._service.model_ready(*_model(request))
        except PyservingError as exc:
            return JSONResponse({"ready": False, "error": str(exc)}, status_code=exc.http_status)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def infer(self, request: Request) -> Response:
        name, version = _model(request)
        if self._service.takes_tensors(name, version):
            return await self._infer_tensors(request, name, version)
        header_length = request.headers.get(HEADER_LENGTH)

        async def parse(model: ModelMetadata) -> tuple[Batch, _Parsed]:
            body = await read_body(request, self._limit)
            text = model.kind == "text"
            doc, inputs = await parse_body(body, lambda b: _parse(b, header_length, text))
            outputs = _requested_outputs(doc)
            return oip.batch(model, inputs, outputs), (doc, outputs)

        scores, (doc, outputs) = await self._service.predict(
            "v2_rest", name, version, parse, _deadline(request)
        )
        return _response(doc, scores.model_name, scores.model_version, oip.outputs(scores, outputs))

    async def _infer_tensors(self, request: Request, name: str, version: int) -> Response:
        header_length = request.headers.get(HEADER_LENGTH)

        async def parse(model: ModelMetadata) -> tuple[Batch, _Parsed]:
            body = await read_body(request, self._limit)
            doc, inputs = await parse_body(body, lambda b: _parse(b, header_length, True))
            outputs = _requested_outputs(doc, [o.name for o in model.outputs])
            return oip.tensor_batch(model, inputs, outputs), (doc, outputs)

        answer, (doc, outputs) = await self._service.infer(
            "v2_rest", name, version, parse, _deadline(request)
        )
        return _response(
            doc, answer.model_name, answer.model_version, oip.tensor_outputs(answer, outputs)
        )


def _response(
    doc: dict[str, Any], model_name: str, model_version: int, tensors: list[oip.OutputTensor]
) -> Response:
    """The response: JSON, or a JSON header and the binary outputs after it."""
    head: dict[str, Any] = {
        "model_name": model_name,
        "model_version": str(model_version),
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
        if tensor.binary:
            raw = oip.raw(tensor)
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif tensor.datatype == "BYTES":
            out["data"] = [e.decode("utf-8", "replace") for e in oip.flat(tensor)]
        else:
            out["data"] = oip.flat(tensor)
        head["outputs"].append(out)
    # As Starlette's JSONResponse writes it, but a tensor model's NaN stays NaN.
    header = json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode()
    if not chunks:
        return Response(header, media_type="application/json")
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


def _parse(
    body: bytes, header_length: str | None, text: bool
) -> tuple[dict[str, Any], list[oip.InputTensor]]:
    """The JSON head and the input tensors, base64 and binary data decoded.

    `text`: JSON strings in BYTES data are the texts themselves (UTF-8), as the protocol
    says, rather than base64 of encoded images.
    """
    doc, binary = _split(body, header_length)
    return doc, _inputs(doc, binary, text)


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
    doc = json_object(head, "a JSON object with an `inputs` list")
    return doc, binary


def _inputs(doc: dict[str, Any], binary: bytes, text: bool) -> list[oip.InputTensor]:
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
        if datatype == "BYTES" and not isinstance(data, bytes):
            data = _json_bytes(data, where, text)
        where_named = where if datatype == "BYTES" else f"{where} ({name!r})"
        out.append(oip.input_tensor(name, datatype, shape, data, where_named))
    return out


def _json_bytes(data: Any, where: str, text: bool) -> list[bytes]:
    flat = data if isinstance(data, list) else [data]
    while flat and all(isinstance(x, list) for x in flat):
        flat = [y for x in flat for y in x]
    out = []
    for j, element in enumerate(flat):
        if text and isinstance(element, str):
            out.append(element.encode("utf-8", "surrogatepass"))
            continue
        encoded = element.get("b64") if isinstance(element, dict) else element
        if not isinstance(encoded, str):
            expected = "a string of text" if text else "a base64 string"
            raise InvalidInput(f'{where}.data[{j}] must be {expected} or {{"b64": ...}}')
        out.append(b64decode(encoded, f"{where}.data[{j}]"))
    return out


def _requested_outputs(
    doc: dict[str, Any], every: Sequence[str] = (oip.OUTPUT_NAME,)
) -> list[oip.RequestedOutput]:
    """The outputs the request names, or `every` output when it names none."""
    params = doc.get("parameters") or {}
    all_binary = bool(isinstance(params, dict) and params.get("binary_data_output"))
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidInput("`outputs` must be a list")
    if not outputs:
        return [oip.RequestedOutput(name, binary=all_binary) for name in every]
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
