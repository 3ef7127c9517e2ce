"""The Open Inference Protocol v2, transport-neutral: tensors ↔ numpy, scores → tensors.

The one conversion both v2 adapters (gRPC and REST) use: they read their wire format into
`input_tensor`s and `RequestedOutput`s, `batch` checks them against the model, and
`outputs` plus `raw` / `flat` give the tensors to write back. Image, text and audio models
take one `BYTES` input of shape [N, 1] or [N] (one encoded image, UTF-8 text or audio clip
each; the metadata says [-1, 1], as Triton does for a batching model);
features models take `FP32` [N, F]. The output `probabilities` is `FP32` [N, classes];
asked with the `classification` parameter (as Triton does) it is `BYTES` [N, K] of
"score:index:label".

Tensor models (`ModelMetadata.answers == "tensors"`) take their named inputs in any of the
protocol's datatypes (`tensor_batch`) and give every output as it is (`tensor_outputs`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import pyserving
from pyserving.core.service import Batch, Outputs, Scores
from pyserving.core.settings import BatchingSettings
from pyserving.errors import InvalidInput, WrongMethod
from pyserving.results import ModelMetadata
from pyserving.tensors import DATATYPES, array_of, datatype_of

OUTPUT_NAME = "probabilities"
# Bounds on a request's shape, whatever its data: numpy cannot make arrays beyond them.
MAX_RANK = 32
MAX_ELEMENTS = 2**31
PLATFORM = "onnx_onnxv1"
CONFIG_PLATFORM = "onnxruntime_onnx"  # Triton's name, in the model configuration
NUMERIC = {d: np.dtype(t) for d, t in DATATYPES.items() if d != "BYTES"}
CLASSIFIER_NUMERIC = ("FP32", "FP64", "FP16")  # what a features model takes


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
    """One response output: a numeric array (FP32 probabilities, or a tensor model's
    output), or BYTES elements (classification strings, or a tensor model's strings)."""

    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray | None = None  # numeric
    elements: tuple[bytes, ...] = ()  # BYTES
    binary: bool = False


def server_metadata() -> dict[str, Any]:
    """The server's metadata as the protocol words it."""
    return {
        "name": "pyserving",
        "version": pyserving.__version__,
        "extensions": ["classification", "binary_tensor_data", "model_configuration"],
    }


def model_metadata(model: ModelMetadata) -> dict[str, Any]:
    """The model's metadata: its real inputs and outputs as the protocol sees them."""
    if model.answers == "tensors":
        return {
            "name": model.name,
            "versions": [str(v) for v in model.versions],
            "platform": PLATFORM,
            "inputs": [_spec(t) for t in model.inputs],
            "outputs": [_spec(t) for t in model.outputs],
            "parameters": {
                "kind": model.kind,
                "engine": model.engine,
                "precision": model.precision,
            },
        }
    inputs = [
        {
            "name": model.input_name,
            "datatype": model.input_datatype,
            "shape": classifier_input_shape(model),
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


def classifier_input_shape(model: ModelMetadata) -> list[int]:
    """A classifier's input shape in v2 metadata: the batch axis, then one input's dims.

    One encoded image, text or clip is one BYTES element, so a batching model's input is
    [-1, 1], as Triton reports a model with `max_batch_size` and dims [1]; perf_analyzer
    needs the two to agree. Requests may send [N, 1] or [N].
    """
    return [-1, *model.input_shape[1:]] if len(model.input_shape) > 1 else [-1, 1]


def model_config(model: ModelMetadata, batching: BatchingSettings) -> dict[str, Any]:
    """Triton's model configuration (the model-configuration extension), as its JSON says it.

    A classifier batches along its first axis, so its dims leave that axis out; a tensor
    model's inputs are described whole (`max_batch_size` 0), as Triton does for models
    without a batch axis.
    """
    config: dict[str, Any] = {
        "name": model.name,
        "platform": CONFIG_PLATFORM,
        "backend": "onnxruntime",
    }
    if model.answers == "tensors":
        config["max_batch_size"] = 0
        config["input"] = [_config_tensor(t.name, t.datatype, t.shape) for t in model.inputs]
        config["output"] = [_config_tensor(t.name, t.datatype, t.shape) for t in model.outputs]
        return config
    config["max_batch_size"] = batching.max_batch_size
    row = classifier_input_shape(model)[1:]
    config["input"] = [_config_tensor(model.input_name, model.input_datatype, row)]
    config["output"] = [_config_tensor(OUTPUT_NAME, "FP32", [len(model.labels)])]
    config["dynamic_batching"] = {
        "max_queue_delay_microseconds": batching.batch_timeout_micros,
    }
    return config


def _config_tensor(name: str, datatype: str, dims: Sequence[int]) -> dict[str, Any]:
    data_type = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
    return {"name": name, "data_type": data_type, "dims": list(dims)}


def _spec(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def parse_version(version: str) -> int:
    """A protocol version string ("" for the newest) as pyserving's int (0 for the newest)."""
    if not version:
        return 0
    if not version.isdigit() or int(version) <= 0:
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    return int(version)


def check_shape(shape: Sequence[Any]) -> list[int]:
    """The shape as a list of ints; anything else, or a shape too large for any array (even
    one with a zero axis), is InvalidInput."""
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_RANK or math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise InvalidInput(
            f"shape {list(shape)} is too large: at most {MAX_RANK} axes and {MAX_ELEMENTS:,} "
            "elements (not counting zero axes)"
        )
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
            f"{where}: datatype {datatype!r} is not a numeric datatype of the protocol "
            f"({', '.join(NUMERIC)}, or BYTES)"
        )
    if isinstance(values, bytes):
        if len(values) % dtype.itemsize:
            raise InvalidInput(
                f"{where}: {len(values)} bytes of data is not a whole number of {datatype} "
                f"values ({dtype.itemsize} bytes each)"
            )
        array = np.frombuffer(values, dtype=dtype.newbyteorder("<"))
    else:
        array = array_of(values, datatype, where)
    if array.size != math.prod(shape):
        raise InvalidInput(
            f"{where}: shape {shape} needs {math.prod(shape)} {datatype} values, got {array.size}"
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
            raise InvalidInput(
                f"input {tensor.name!r}: shape must be [N, 1] or [N], got {tensor.shape}"
            )
        if len(tensor.elements) != tensor.shape[0]:
            raise InvalidInput(
                f"input {tensor.name!r}: shape {tensor.shape} but {len(tensor.elements)} elements"
            )
        return Batch(images=tensor.elements)
    if tensor.array is None:
        raise InvalidInput(f"input {tensor.name!r}: datatype must be FP32 [N, F]")
    if tensor.datatype not in CLASSIFIER_NUMERIC:
        raise InvalidInput(
            f"input {tensor.name!r}: datatype {tensor.datatype!r} is not accepted here; use "
            "FP32 (or FP64, FP16)"
        )
    return Batch(features=tensor.array)


def tensor_batch(
    model: ModelMetadata, inputs: Sequence[InputTensor], outputs: Sequence[RequestedOutput]
) -> Batch:
    """A tensor model's request as named arrays; the model's kind checks them against it."""
    tensors: dict[str, np.ndarray] = {}
    for tensor in inputs:
        if tensor.name in tensors:
            raise InvalidInput(f"input {tensor.name!r} is given twice")
        if tensor.elements is not None:
            count = math.prod(tensor.shape)
            if len(tensor.elements) != count:
                raise InvalidInput(
                    f"input {tensor.name!r}: shape {tensor.shape} needs {count} elements, got "
                    f"{len(tensor.elements)}"
                )
            array = np.empty(count, dtype=object)
            array[:] = tensor.elements
            tensors[tensor.name] = array.reshape(tensor.shape)
        elif tensor.array is not None:
            tensors[tensor.name] = tensor.array
    names = [o.name for o in model.outputs]
    for requested in outputs:
        if requested.classification:
            raise WrongMethod(
                f"outputs: {requested.name!r} asks for classification, but model "
                f"{model.name!r} is a tensor model, not a classifier: ask for its outputs "
                "without the classification parameter"
            )
        if requested.name not in names:
            raise InvalidInput(
                f"outputs: unknown output {requested.name!r}; model {model.name!r} has "
                f"{', '.join(names)}"
            )
    return Batch(tensors=tensors)


def tensor_outputs(
    outputs: Outputs, requested: Sequence[RequestedOutput], binary: bool = False
) -> list[OutputTensor]:
    """The outputs the request asked for (all of them, `binary` or not, when it named none)."""
    wanted = list(requested) or [RequestedOutput(n, binary=binary) for n in outputs.tensors]
    tensors = []
    for r in wanted:
        array = outputs.tensors[r.name]
        datatype = datatype_of(array)
        shape = list(array.shape)
        if datatype == "BYTES":
            elements = tuple(
                e.encode("utf-8", "surrogatepass") if isinstance(e, str) else bytes(e)
                for e in array.reshape(-1)
            )
            tensors.append(
                OutputTensor(r.name, datatype, shape, elements=elements, binary=r.binary)
            )
        else:
            tensors.append(OutputTensor(r.name, datatype, shape, array, binary=r.binary))
    return tensors


def outputs(scores: Scores, requested: Sequence[RequestedOutput]) -> list[OutputTensor]:
    """The outputs the request asked for (all of them when it named none)."""
    wanted = list(requested) or [RequestedOutput(OUTPUT_NAME)]
    return [_output(scores, r) for r in wanted]


def raw(tensor: OutputTensor) -> bytes:
    """The tensor in the binary layout: length-prefixed BYTES, or little-endian numbers."""
    if tensor.datatype == "BYTES":
        return encode_bytes_tensor(tensor.elements)
    assert tensor.array is not None
    return tensor.array.astype(tensor.array.dtype.newbyteorder("<")).tobytes()


def flat(tensor: OutputTensor) -> list[Any]:
    """The tensor's elements in row-major order: bytes for BYTES, else Python numbers."""
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
