"""The Open Inference Protocol v2, transport-neutral: tensors ↔ numpy, scores → tensors.

The one conversion both v2 adapters (gRPC and REST) use: they read their wire format into
`input_tensor`s and `RequestedOutput`s, `batch` checks them against the model, and
`outputs` plus `raw` / `flat` give the tensors to write back. Image, text and audio models
take one `BYTES` input of shape [N] (one encoded image, UTF-8 text or audio clip each);
features models take `FP32` [N, F]. The output `probabilities` is `FP32` [N, classes];
asked with the `classification` parameter (as Triton does) it is `BYTES` [N, K] of
"score:index:label".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import pyserving
from pyserving.errors import InvalidInput
from pyserving.results import ModelMetadata
from pyserving.service import Batch, Scores

OUTPUT_NAME = "probabilities"
PLATFORM = "onnx_onnxv1"
NUMERIC = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}


@dataclass(frozen=True)
class InputTensor:
    """One request input: BYTES elements, or a numeric array already in its shape."""

    name: str
    datatype: str
    shape: list[int]
    elements: tuple[bytes, ...] | None = None
    array: np.ndarray | None = None


@dataclass(frozen=True)
class RequestedOutput:
    """An output the request asks for, and how."""

    name: str
    classification: int = 0  # K > 0: "score:index:label" strings for the top K
    binary: bool = False


@dataclass(frozen=True)
class OutputTensor:
    """One response output: FP32 probabilities, or BYTES classification strings."""

    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray | None = None  # FP32
    elements: tuple[bytes, ...] = ()  # BYTES
    binary: bool = False


def server_metadata() -> dict[str, Any]:
    """The server's metadata as the protocol words it."""
    return {
        "name": "pyserving",
        "version": pyserving.__version__,
        "extensions": ["classification", "binary_tensor_data"],
    }


def model_metadata(model: ModelMetadata) -> dict[str, Any]:
    """The model's metadata: its real input and output as the protocol sees them."""
    inputs = [
        {
            "name": model.input_name,
            "datatype": model.input_datatype,
            "shape": list(model.input_shape),
        }
    ]
    return {
        "name": model.name,
        "versions": [str(v) for v in model.versions],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(model.labels)]}],
        "parameters": {
            "kind": model.kind,
            "features": list(model.features),
            "labels": len(model.labels),
            "engine": model.engine,
            "precision": model.precision,
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
    """The shape as a list of ints; anything else is InvalidInput."""
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
    """The binary BYTES layout of `elements` (see `decode_bytes_tensor`)."""
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


def input_tensor(
    name: str, datatype: str, shape: Sequence[Any], data: Any, where: str
) -> InputTensor:
    """An input from its wire parts. `data` is raw little-endian bytes (the binary layout),
    the BYTES elements already decoded, or nested lists of numbers."""
    dims = check_shape(shape)
    if datatype == "BYTES":
        elements = decode_bytes_tensor(data, where) if isinstance(data, bytes) else list(data)
        return InputTensor(name, datatype, dims, elements=tuple(elements))
    return InputTensor(name, datatype, dims, array=numeric_array(data, datatype, dims, where))


def batch(
    model: ModelMetadata, inputs: Sequence[InputTensor], outputs: Sequence[RequestedOutput]
) -> Batch:
    """The service's input for this request, checked against the model's metadata."""
    if len(inputs) != 1:
        raise InvalidInput(
            f"model {model.name!r} takes exactly one input named {model.input_name!r}, "
            f"got {len(inputs)}"
        )
    (tensor,) = inputs
    if tensor.name != model.input_name:
        raise InvalidInput(
            f"inputs[0].name is {tensor.name!r}; model {model.name!r} takes an input "
            f"named {model.input_name!r}"
        )
    for requested in outputs:
        if requested.name != OUTPUT_NAME:
            raise InvalidInput(
                f"outputs: unknown output {requested.name!r}; this model has {OUTPUT_NAME!r}"
            )
    if model.input_datatype == "BYTES":
        what = {"text": "UTF-8 texts", "audio": "encoded audio clips"}.get(
            model.kind, "encoded images"
        )
        if tensor.datatype != "BYTES" or tensor.elements is None:
            raise InvalidInput(
                f"input {tensor.name!r}: datatype must be BYTES ({what}), got {tensor.datatype!r}"
            )
        if len(tensor.shape) != 1 and not (len(tensor.shape) == 2 and tensor.shape[1] == 1):
            raise InvalidInput(f"input {tensor.name!r}: shape must be [N], got {tensor.shape}")
        if len(tensor.elements) != tensor.shape[0]:
            raise InvalidInput(
                f"input {tensor.name!r}: shape {tensor.shape} but {len(tensor.elements)} elements"
            )
        return Batch(images=tensor.elements)
    if tensor.array is None:
        raise InvalidInput(f"input {tensor.name!r}: datatype must be FP32 [N, F]")
    return Batch(features=tensor.array)


def outputs(scores: Scores, requested: Sequence[RequestedOutput]) -> list[OutputTensor]:
    """The outputs the request asked for (all of them when it named none)."""
    wanted = list(requested) or [RequestedOutput(OUTPUT_NAME)]
    return [_output(scores, r) for r in wanted]


def raw(tensor: OutputTensor) -> bytes:
    """The tensor in the binary layout: length-prefixed BYTES, or little-endian FP32."""
    if tensor.datatype == "BYTES":
        return encode_bytes_tensor(tensor.elements)
    assert tensor.array is not None
    return tensor.array.astype("<f4").tobytes()


def flat(tensor: OutputTensor) -> list[Any]:
    """The tensor's elements in row-major order: bytes for BYTES, floats for FP32."""
    if tensor.datatype == "BYTES":
        return list(tensor.elements)
    assert tensor.array is not None
    values: list[Any] = tensor.array.ravel().tolist()
    return values


def _output(scores: Scores, requested: RequestedOutput) -> OutputTensor:
    probs = scores.probabilities
    n, classes = probs.shape
    if requested.classification <= 0:
        return OutputTensor(OUTPUT_NAME, "FP32", [n, classes], array=probs, binary=requested.binary)
    k = min(requested.classification, classes)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    elements = tuple(
        f"{probs[i, j]:.6f}:{j}:{scores.labels[j]}".encode() for i in range(n) for j in best[i]
    )
    return OutputTensor(OUTPUT_NAME, "BYTES", [n, k], elements=elements, binary=requested.binary)
