"""TensorFlow's `TensorProto` ↔ numpy, for TF Serving's gRPC API (no TensorFlow needed).

A tensor's elements come in `tensor_content` (raw little-endian bytes, as
`tf.make_tensor_proto` writes numbers) or in the typed field of its dtype; one value in the
typed field fills the whole shape, as TensorFlow reads it. Answers use the typed fields,
which both `tf.make_ndarray` and scripts reading `outputs["scores"].float_val` understand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyserving._proto import tensorflow_core_pb2 as tf
from pyserving.errors import InvalidInput

# dtype: (numpy type, typed field, OIP v2 datatype)
DTYPES: dict[int, tuple[str, str, str]] = {
    tf.DT_FLOAT: ("float32", "float_val", "FP32"),
    tf.DT_DOUBLE: ("float64", "double_val", "FP64"),
    tf.DT_HALF: ("float16", "half_val", "FP16"),
    tf.DT_INT8: ("int8", "int_val", "INT8"),
    tf.DT_INT16: ("int16", "int_val", "INT16"),
    tf.DT_INT32: ("int32", "int_val", "INT32"),
    tf.DT_INT64: ("int64", "int64_val", "INT64"),
    tf.DT_UINT8: ("uint8", "int_val", "UINT8"),
    tf.DT_UINT16: ("uint16", "int_val", "UINT16"),
    tf.DT_UINT32: ("uint32", "uint32_val", "UINT32"),
    tf.DT_UINT64: ("uint64", "uint64_val", "UINT64"),
    tf.DT_BOOL: ("bool", "bool_val", "BOOL"),
    tf.DT_STRING: ("object", "string_val", "BYTES"),
}
_BY_DATATYPE = {datatype: dtype for dtype, (_, _, datatype) in DTYPES.items()}


def dtype_name(dtype: int) -> str:
    """`DT_FLOAT` and so on, or the number for a dtype TensorFlow has and this file lacks."""
    try:
        return tf.DataType.Name(dtype)  # type: ignore[arg-type]
    except ValueError:
        return str(dtype)


def shape_of(tensor: tf.TensorProto) -> list[int]:
    """The tensor's shape; -1 (unknown) is refused in a request."""
    if tensor.tensor_shape.unknown_rank:
        raise InvalidInput("a request tensor must have a known shape")
    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    if any(s < 0 for s in shape):
        raise InvalidInput(f"a request tensor must have a known shape, got {shape}")
    return shape


def to_array(tensor: tf.TensorProto, where: str) -> np.ndarray:
    """The request tensor as a numpy array (DT_STRING: an object array of bytes)."""
    if tensor.dtype not in DTYPES:
        raise InvalidInput(f"{where}: dtype {dtype_name(tensor.dtype)} is not supported")
    numpy_type, field, _ = DTYPES[tensor.dtype]
    shape = shape_of(tensor)
    count = int(np.prod(shape))
    if tensor.tensor_content and tensor.dtype != tf.DT_STRING:
        dtype = np.dtype(numpy_type).newbyteorder("<")
        if len(tensor.tensor_content) != count * dtype.itemsize:
            raise InvalidInput(
                f"{where}: tensor_content has {len(tensor.tensor_content)} bytes; shape "
                f"{shape} of {dtype_name(tensor.dtype)} needs {count * dtype.itemsize}"
            )
        return np.frombuffer(tensor.tensor_content, dtype).astype(numpy_type).reshape(shape)
    values: Any = getattr(tensor, field)
    if tensor.dtype == tf.DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    elif tensor.dtype == tf.DT_HALF:
        array = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        array = np.asarray(values, dtype=numpy_type)
    if len(array) == 1 and count != 1:
        array = np.repeat(array, count)  # one value fills the shape, as in TensorFlow
    if len(array) != count:
        raise InvalidInput(
            f"{where}: shape {shape} needs {count} values, got {len(array)} in {field}"
        )
    return array.reshape(shape)


def to_proto(array: np.ndarray, datatype: str | None = None) -> tf.TensorProto:
    """A numpy array as a `TensorProto` in its typed field (object arrays: DT_STRING)."""
    if datatype is None:
        datatype = "BYTES" if array.dtype == object else _datatype_of(array.dtype)
    dtype = _BY_DATATYPE.get(datatype)
    if dtype is None:
        raise InvalidInput(f"an output of datatype {datatype} has no TensorFlow dtype")
    numpy_type, field, _ = DTYPES[dtype]
    proto = tf.TensorProto(dtype=dtype)  # type: ignore[arg-type]
    proto.tensor_shape.dim.extend(tf.TensorShapeProto.Dim(size=s) for s in array.shape)
    flat = array.reshape(-1)
    if dtype == tf.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat)
    elif dtype == tf.DT_HALF:
        proto.half_val.extend(flat.astype(np.float16).view(np.uint16).tolist())
    else:
        getattr(proto, field).extend(flat.astype(numpy_type).tolist())
    return proto


def _datatype_of(dtype: np.dtype) -> str:
    for numpy_type, _, datatype in DTYPES.values():
        if numpy_type != "object" and np.dtype(numpy_type) == dtype:
            return datatype
    raise InvalidInput(f"an output of numpy type {dtype} has no TensorFlow dtype")


def tensor_info(name: str, datatype: str, shape: tuple[int, ...]) -> tf.TensorInfo:
    """A signature's entry for one tensor: its name, dtype and shape (-1: any size)."""
    info = tf.TensorInfo(name=name, dtype=_BY_DATATYPE.get(datatype, tf.DT_INVALID))  # type: ignore[arg-type]
    info.tensor_shape.dim.extend(tf.TensorShapeProto.Dim(size=s) for s in shape)
    return info
