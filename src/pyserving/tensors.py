"""Named tensors in numpy: the OIP v2 datatypes, JSON values as arrays, and batches of
requests concatenated on axis 0.

A tensor model's request is one `Prepared` input to the batcher. `stack` groups the
requests of a batch: those with one key (the same shapes apart from axis 0, with a batch
axis) are concatenated into one engine call, the others run alone; `run` gives every
request its own outputs, or the InvalidInput its inputs caused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pyserving.errors import InvalidInput, PyservingError

if TYPE_CHECKING:
    from pyserving.engines.base import Engine

# OIP v2 datatype → the numpy dtype name engines report (`TensorInfo.dtype`).
DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "string",
}
DATATYPE_OF = {dtype: datatype for datatype, dtype in DATATYPES.items()}


@dataclass(frozen=True)
class Prepared:
    """One request's inputs, checked and converted: what the batcher queues."""

    feeds: dict[str, np.ndarray]
    key: tuple[Any, ...] | None  # requests with one key may be concatenated; None: alone
    rows: int  # size of axis 0 (with batch_axis)


@dataclass(frozen=True)
class Group:
    """Requests that run in one engine call: their indices in the batch, and their inputs."""

    indices: tuple[int, ...]
    feeds: dict[str, np.ndarray]  # concatenated on axis 0 when there are several
    parts: tuple[Prepared, ...]


# What the elements of JSON data must be for each family of datatypes (numpy dtype kinds).
_JSON_KINDS = {"FP": ("biuf", "numbers"), "INT": ("iu", "integers"), "UINT": ("iu", "integers")}


def array_of(values: Any, datatype: str, where: str) -> np.ndarray:
    """Nested lists (JSON data) as an array of `datatype`: numbers for FP, integers (in
    range) for INT and UINT, true or false for BOOL, strings (as UTF-8) or bytes for BYTES.
    InvalidInput saying what was found otherwise."""
    if datatype == "BYTES":
        return _bytes_array(values, where)
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(f"{where}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    try:
        raw = np.asarray(values)
    except ValueError:
        raise InvalidInput(
            f"{where}: the data is ragged: every row needs the same length"
        ) from None
    family = datatype.rstrip("0123456789")
    kinds, what = _JSON_KINDS.get(family, ("b", "true or false"))
    if raw.size and raw.dtype.kind not in kinds:
        sample = raw.reshape(-1)[0]
        sample = sample.item() if isinstance(sample, np.generic) else sample
        raise InvalidInput(f"{where}: {datatype} data must be {what}, got {sample!r}")
    if raw.size and family in ("INT", "UINT"):
        info = np.iinfo(dtype)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidInput(f"{where}: {bad} is out of the range of {datatype}")
    # A number beyond FP16/FP32 becomes infinity, which the tensor kind refuses by name.
    with np.errstate(over="ignore"):
        return raw.astype(dtype)


def _bytes_array(values: Any, where: str) -> np.ndarray:
    raw = np.asarray(values, dtype=object)
    out = np.empty(raw.shape, dtype=object)
    flat, target = raw.reshape(-1), out.reshape(-1)
    for i, element in enumerate(flat):
        if isinstance(element, str):
            element = element.encode("utf-8", "surrogatepass")
        elif not isinstance(element, bytes):
            raise InvalidInput(
                f"{where}: BYTES element {i} is {type(element).__name__}; expected a string"
                + (" (every row needs the same length)" if isinstance(element, list) else "")
            )
        target[i] = element
    return out


def datatype_of(array: np.ndarray) -> str:
    """The OIP v2 datatype of a numpy array: object arrays (of bytes or str) are BYTES."""
    if array.dtype == object:
        return "BYTES"
    return DATATYPE_OF.get(array.dtype.name, array.dtype.name)


def stack(items: list[Prepared]) -> list[Group]:
    """Group the requests of a batch: those with one key are concatenated on axis 0."""
    by_key: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        by_key.setdefault(item.key if item.key is not None else ("alone", i), []).append(i)
    groups = []
    for indices in by_key.values():
        parts = tuple(items[i] for i in indices)
        if len(parts) == 1:
            feeds = parts[0].feeds
        else:
            feeds = {n: np.concatenate([p.feeds[n] for p in parts]) for n in parts[0].feeds}
        groups.append(Group(tuple(indices), feeds, parts))
    return groups


def run(engine: Engine, groups: list[Group]) -> list[Any]:
    """Every request's outputs (or the InvalidInput its inputs caused), in batch order."""
    answers: list[Any] = [None] * sum(len(g.indices) for g in groups)
    for group in groups:
        outputs = _call(engine, group.feeds)
        if len(group.parts) == 1:
            answers[group.indices[0]] = outputs
            continue
        rows = [p.rows for p in group.parts]
        if isinstance(outputs, BaseException) or not _splits(outputs, sum(rows)):
            # One request's values can fail a whole group; its neighbours must not fail too.
            for i, part in zip(group.indices, group.parts, strict=True):
                answers[i] = _call(engine, part.feeds)
            continue
        offsets = np.cumsum(rows)[:-1]
        pieces = {n: np.split(o, offsets) for n, o in outputs.items()}
        for j, i in enumerate(group.indices):
            answers[i] = {n: pieces[n][j] for n in outputs}
    return answers


def _call(engine: Engine, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | InvalidInput:
    try:
        return engine.run_named(feeds)
    except PyservingError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()
        return InvalidInput(
            "the model cannot run on these inputs: " + (reason[0] if reason else type(exc).__name__)
        )


def _splits(outputs: Mapping[str, np.ndarray], rows: int) -> bool:
    return all(o.ndim and o.shape[0] == rows for o in outputs.values())
