"""The Open Inference Protocol v2, transport-neutral: tensors in, class scores out.

`v2_grpc_api` and `v2_http_api` parse their wire formats into `InputTensor` and
`RequestedOutput`, call `infer`, and write the `OutputTensor`s back. Image models take
one `BYTES` input of shape [N] (one encoded image per element); features models take
`FP32` [N, F]. The output `probabilities` is `FP32` [N, classes]; asked with the
`classification` parameter (as Triton does) it is `BYTES` [N, K] of "score:index:label".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pyserving
from pyserving.errors import InvalidInput
from pyserving.results import Scores
from pyserving.servable import Servable
from pyserving.service import Service

OUTPUT_NAME = "probabilities"
PLATFORM = "onnx_onnxv1"
NUMERIC = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}


@dataclass
class InputTensor:
    """One request input: BYTES elements, or a numeric array already in its shape."""

    name: str
    datatype: str
    shape: list[int]
    elements: list[bytes] | None = None
    array: np.ndarray | None = None


@dataclass
class RequestedOutput:
    name: str
    classification: int = 0  # K > 0: "score:index:label" strings for the top K
    binary: bool = False


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray | None = None  # FP32
    elements: list[bytes] = field(default_factory=list)  # BYTES
    binary: bool = False


def server_metadata() -> dict[str, Any]:
    return {
        "name": "pyserving",
        "version": pyserving.__version__,
        "extensions": ["classification", "binary_tensor_data"],
    }


def model_metadata(servable: Servable, versions: Sequence[int]) -> dict[str, Any]:
    """The model's metadata: its real input and output as the protocol sees them."""
    sig = servable.signature
    if sig.kind == "image":
        inputs = [{"name": sig.input_name, "datatype": "BYTES", "shape": [-1]}]
    else:
        inputs = [{"name": sig.input_name, "datatype": "FP32", "shape": [-1, len(sig.features)]}]
    return {
        "name": servable.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, sig.num_classes]}],
        "parameters": {
            "kind": sig.kind,
            "features": list(sig.features),
            "labels": len(sig.labels),
            "engine": servable.engine_info.name,
            "precision": servable.precision,
        },
    }


def parse_version(version: str) -> int:
    """A protocol version string ("" for the newest) as pyserving's int (0 for the newest)."""
    if not version:
        return 0
    if not version.isdigit() or int(version) <= 0:
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    return int(version)


def check_shape(shape: Sequence[Any]) -> list[int]:
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"shape must be a list of non-negative integers, got {shape!r}")
    return [int(d) for d in shape]


def decode_bytes_tensor(raw: bytes, where: str) -> list[bytes]:
    """The protocol's binary BYTES layout: each element is a 4-byte little-endian length
    followed by that many bytes."""
    out, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"{where}: BYTES data ends inside an element's length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"{where}: BYTES element of {length} bytes runs past the data")
        out.append(raw[offset : offset + length])
        offset += length
    return out


def encode_bytes_tensor(elements: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def numeric_array(values: Any, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """A numeric tensor from nested lists or raw little-endian bytes, checked against shape."""
    dtype = NUMERIC.get(datatype)
    if dtype is None:
        raise InvalidInput(
            f"{where}: datatype {datatype!r} is not accepted here; use FP32 (or FP64, FP16)"
        )
    try:
        if isinstance(values, bytes):
            array = np.frombuffer(values, dtype=np.dtype(dtype).newbyteorder("<"))
        else:
            array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: data is not a list of {datatype} numbers ({exc})") from exc
    if array.size != int(np.prod(shape)):
        raise InvalidInput(
            f"{where}: shape {shape} needs {int(np.prod(shape))} values, got {array.size}"
        )
    return array.reshape(shape)


async def infer(
    service: Service,
    model_name: str,
    model_version: int,
    inputs: Sequence[InputTensor],
    outputs: Sequence[RequestedOutput],
    deadline: float | None = None,
) -> tuple[Scores, list[OutputTensor]]:
    """Validate the inputs against the model, run them, and build the requested outputs."""
    servable = service.servable(model_name, model_version)
    sig = servable.signature
    if len(inputs) != 1:
        raise InvalidInput(
            f"model {servable.name!r} takes exactly one input named {sig.input_name!r}, "
            f"got {len(inputs)}"
        )
    (tensor,) = inputs
    if tensor.name != sig.input_name:
        raise InvalidInput(
            f"inputs[0].name is {tensor.name!r}; model {servable.name!r} takes an input "
            f"named {sig.input_name!r}"
        )
    for requested in outputs:
        if requested.name != OUTPUT_NAME:
            raise InvalidInput(
                f"outputs: unknown output {requested.name!r}; this model has {OUTPUT_NAME!r}"
            )
    if sig.kind == "image":
        if tensor.datatype != "BYTES" or tensor.elements is None:
            raise InvalidInput(
                f"input {tensor.name!r}: datatype must be BYTES (encoded images), "
                f"got {tensor.datatype!r}"
            )
        if len(tensor.shape) != 1 and not (len(tensor.shape) == 2 and tensor.shape[1] == 1):
            raise InvalidInput(f"input {tensor.name!r}: shape must be [N], got {tensor.shape}")
        if len(tensor.elements) != tensor.shape[0]:
            raise InvalidInput(
                f"input {tensor.name!r}: shape {tensor.shape} but {len(tensor.elements)} elements"
            )
        scores = await service.predict(
            servable.name, model_version, images=tensor.elements, deadline=deadline
        )
    else:
        if tensor.array is None:
            raise InvalidInput(f"input {tensor.name!r}: datatype must be FP32 [N, F]")
        scores = await service.predict(
            servable.name, model_version, features=tensor.array, deadline=deadline
        )
    wanted = list(outputs) or [RequestedOutput(OUTPUT_NAME)]
    return scores, [_output(scores, r) for r in wanted]


def _output(scores: Scores, requested: RequestedOutput) -> OutputTensor:
    probs = scores.probabilities
    n, classes = probs.shape
    if requested.classification <= 0:
        return OutputTensor(OUTPUT_NAME, "FP32", [n, classes], array=probs, binary=requested.binary)
    k = min(requested.classification, classes)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    elements = [
        f"{probs[i, j]:.6f}:{j}:{scores.labels[j]}".encode() for i in range(n) for j in best[i]
    ]
    return OutputTensor(OUTPUT_NAME, "BYTES", [n, k], elements=elements, binary=requested.binary)
