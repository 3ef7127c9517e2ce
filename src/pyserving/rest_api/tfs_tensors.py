"""TensorFlow Serving's JSON for tensor models: rows and columns in, predictions out.

Rows, `{"instances": [row, ...]}` (a row is the input's value for a one-input model, else an
object of named values), are answered `{"predictions": [...]}` (per row: the one output's
value, else an object of named values); columns, `{"inputs": value}` or `{"inputs": {name:
value, ...}}`, are answered `{"outputs": value}` or `{"outputs": {name: value, ...}}`. JSON
numbers become the input's datatype; a string is UTF-8 text, `{"b64": ...}` bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyserving.core.service import Outputs
from pyserving.errors import InvalidInput
from pyserving.rest_api.body import b64decode
from pyserving.results import ModelMetadata, TensorSpec
from pyserving.tensors import array_of

# TensorFlow's names of the OIP v2 datatypes, for a tensor model's metadata.
DT_TYPES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}


def tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": DT_TYPES[spec.datatype],
        "tensor_shape": {"dim": [{"size": str(d)} for d in spec.shape]},
        "name": spec.name,
    }


def read_tensors(
    model: ModelMetadata, doc: dict[str, Any]
) -> tuple[dict[str, np.ndarray], int | None]:
    """A tensor model's inputs from either format, and the number of rows (None: columns)."""
    specs = {t.name: t for t in model.inputs}
    names = ", ".join(specs)
    if ("instances" in doc) == ("inputs" in doc):
        raise InvalidInput(
            "give `instances` (a list of rows) or `inputs` (named columns), one of them; "
            f"this model takes {names}"
        )
    (only,) = specs if len(specs) == 1 else (None,)
    rows: int | None = None
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("`instances` must be a non-empty list of rows")
        rows = len(instances)
        columns = _columns(instances, only, names)
    else:
        inputs = doc["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            columns = inputs
        elif only is not None:
            columns = {only: inputs}
        else:
            raise InvalidInput(f"`inputs` must be an object of named values: {names}")
    tensors = {}
    for key, values in columns.items():
        spec = specs.get(key)
        if spec is None:
            raise InvalidInput(f"unknown input {key!r}: the model takes {names}")
        if spec.datatype == "BYTES":
            values = _bytes(values, f"input {key!r}")
        tensors[key] = array_of(values, spec.datatype, f"input {key!r}")
    return tensors, rows


def _columns(instances: list[Any], only: str | None, names: str) -> dict[str, list[Any]]:
    """Rows (each a value, or an object of named values) as columns."""
    if only is not None:
        named = [isinstance(x, dict) and set(x) == {only} for x in instances]
        return {only: [x[only] if n else x for x, n in zip(instances, named, strict=True)]}
    if not isinstance(instances[0], dict):
        raise InvalidInput(f"instances[0] must be an object of named values: {names}")
    keys = list(instances[0])
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or set(row) != set(keys):
            raise InvalidInput(
                f"instances[{i}] must name the same inputs as instances[0] ({', '.join(keys)})"
            )
    return {k: [row[k] for row in instances] for k in keys}


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _bytes(values: Any, where: str) -> Any:
    """Nested lists with `{"b64": ...}` elements decoded to bytes (strings stay text)."""
    if isinstance(values, list):
        return [_bytes(v, where) for v in values]
    if _is_b64(values):
        return b64decode(values["b64"], f"{where}.b64")
    return values


def tensor_answer(answer: Outputs, rows: int | None) -> dict[str, Any]:
    values = {name: _values(array) for name, array in answer.tensors.items()}
    if rows is None:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    for name, array in answer.tensors.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise InvalidInput(
                f"output {name!r} has shape {list(array.shape)}, not one row per instance "
                f"({rows}); send `inputs` (columns) to get it whole"
            )
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(rows)]}


def _values(array: np.ndarray) -> Any:
    """An output as JSON values: numbers, or strings for BYTES."""
    if array.dtype == object:
        text = [e.decode("utf-8", "replace") if isinstance(e, bytes) else e for e in array.flat]
        array = np.array(text, dtype=object).reshape(array.shape)
    return array.tolist()
