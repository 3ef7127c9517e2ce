"""Tensor models: any ONNX model, named tensors in and every output back, no labels.

`servable.json` input section: `name` and `dtype` (those of the first input, as for every
kind), `tensors`: every input as `{"name", "datatype", "shape"}` (OIP v2 datatypes; -1 is an
axis of any size), `batch_axis`: whether axis 0 of every input and output is the batch, and
`allow_nan`: whether float inputs may hold NaN or infinities (refused otherwise). The
output section has `name` (the first output) and `tensors`, every output; `labels.txt` is
empty.

A request's tensors run together in one engine call, as they came. With `batch_axis`, the
requests that the batcher takes together and whose inputs have the same shapes apart from
axis 0 are concatenated into one call and their rows split back; every other request runs
alone. A request the model cannot run on fails alone: a group that fails runs again one
request at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from pyserving.errors import InvalidInput, PyservingError, WrongMethod
from pyserving.kinds import Batch, Fail, Limits, Output, Prepare, Wire
from pyserving.reference import load_tensor_reference
from pyserving.results import TensorSpec

if TYPE_CHECKING:
    from pyserving.engines import Engine, EngineInfo, TensorInfo
    from pyserving.results import Example
    from pyserving.signature import Signature

OFF_LOOP = True  # checking and converting megabytes of numbers is CPU work
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
FREE_AXIS = 4  # elements a generated input gets on an axis of any size (not the batch)
MiB = 1024 * 1024
USE_PREDICT = (
    "it is not a classifier: it takes named tensors and answers with its outputs. "
    "Use predict: OIP v2 infer (/v2/models/{name}/infer, gRPC ModelInfer), TF Serving "
    ":predict, or `pyserving predict`"
)


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


# -- servable.json ----------------------------------------------------------------------


def parse(section: dict[str, Any], fail: Fail) -> dict[str, Any]:
    """The input fields of a tensor model's signature, checked."""
    inputs = _specs(section.get("tensors"), "input.tensors", fail)
    first = inputs[0]
    if section.get("name") != first.name or section.get("dtype") != DATATYPES[first.datatype]:
        raise fail(
            f"input.name and input.dtype must be those of the first input in input.tensors "
            f"({first.name!r}, {DATATYPES[first.datatype]!r})"
        )
    flags = {}
    for key in ("batch_axis", "allow_nan"):
        value = section.get(key, False)
        if not isinstance(value, bool):
            raise fail(f"input.{key} must be true or false, got {value!r}")
        flags[key] = value
    return {"inputs": inputs, **flags}


def section(signature: Signature) -> dict[str, Any]:
    """The input fields as `servable.json` writes them."""
    return {
        "tensors": [_spec_json(t) for t in signature.inputs],
        "batch_axis": signature.batch_axis,
        "allow_nan": signature.allow_nan,
    }


def parse_output(doc: dict[str, Any], labels: list[str], fail: Fail) -> dict[str, Any]:
    """Every output, from the `output` section; `labels.txt` must be empty."""
    out = doc.get("output")
    if not isinstance(out, dict):
        raise fail("missing the 'output' object")
    outputs = _specs(out.get("tensors"), "output.tensors", fail)
    if out.get("name") != outputs[0].name:
        raise fail(f"output.name must be the first output in output.tensors ({outputs[0].name!r})")
    if labels:
        raise fail(
            f"labels.txt has {len(labels)} labels; a tensor model has no classes, so it must "
            "be empty"
        )
    return {"output_name": outputs[0].name, "outputs": outputs}


def output_section(signature: Signature) -> dict[str, Any]:
    """The outputs as `servable.json` writes them."""
    return {
        "output": {
            "name": signature.output_name,
            "tensors": [_spec_json(t) for t in signature.outputs],
        }
    }


def _specs(value: Any, where: str, fail: Fail) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list) or not value:
        raise fail(f"{where} must be a non-empty list of {{name, datatype, shape}}")
    specs = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise fail(f"{at} must be an object with name, datatype and shape")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise fail(f"{at}.name must be a non-empty string")
        if datatype not in DATATYPES:
            raise fail(f"{at}.datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise fail(f"{at}.shape must be a list of sizes (-1: any size), got {shape!r}")
        specs.append(TensorSpec(name, datatype, tuple(shape)))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise fail(f"{where} names a tensor twice: {names}")
    return tuple(specs)


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


# -- inputs -----------------------------------------------------------------------------


def row_shape(signature: Signature, engine_input: TensorInfo) -> tuple[int, ...]:
    """Not used: a tensor model's request keeps the shapes it came with."""
    return ()


def sample_feeds(
    specs: Sequence[TensorSpec], rows: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    """Deterministic inputs for `specs`: normal floats, integers and booleans of 0 and 1,
    short strings. Axis 0 of any size gets `rows`, other axes of any size `FREE_AXIS`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = tuple(
            d if d >= 0 else (rows if axis == 0 else FREE_AXIS) for axis, d in enumerate(spec.shape)
        )
        dtype = DATATYPES[spec.datatype]
        if spec.datatype == "BYTES":
            feeds[spec.name] = np.full(shape, "pyserving", dtype=object)
        elif spec.datatype.startswith("FP"):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def warm_up(signature: Signature, row_shape: tuple[int, ...]) -> list[Group]:
    """A batch of one generated request (one row where axes are free)."""
    return stack([_prepared(signature, sample_feeds(signature.inputs, rows=1))])


def prepare(
    signature: Signature, example: Example, limits: Limits, row_shape: tuple[int, ...]
) -> np.ndarray:
    """Refused: a tensor model is not a classifier."""
    raise WrongMethod(f"This model cannot classify: {USE_PREDICT}")


def prepare_batch(
    signature: Signature, batch: Batch, limits: Limits, row_shape: tuple[int, ...]
) -> list[Prepare]:
    """The request's named tensors as one input, checked against the signature.

    Names, datatypes, shapes and sizes are checked at once (cheap); the returned function
    checks the values (NaN) and converts strings, for the thread pool.
    """
    if batch.tensors is None:
        raise WrongMethod(
            f"This model takes named tensors, not images, texts or features: {USE_PREDICT}"
        )
    feeds = check_inputs(signature, batch.tensors, limits)
    return [partial(_prepared, signature, feeds)]  # type: ignore[list-item]


def check_inputs(
    signature: Signature, tensors: Mapping[str, np.ndarray], limits: Limits
) -> dict[str, np.ndarray]:
    """The request's tensors in the model's order; InvalidInput naming what is wrong."""
    takes = ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in signature.inputs)
    declared = {s.name for s in signature.inputs}
    unknown = [n for n in tensors if n not in declared]
    if unknown:
        raise InvalidInput(f"unknown input {unknown[0]!r}: the model takes {takes}")
    missing = [s.name for s in signature.inputs if s.name not in tensors]
    if missing:
        raise InvalidInput(f"missing input {missing[0]!r}: the model takes {takes}")
    feeds = {}
    for spec in signature.inputs:
        array = tensors[spec.name]
        given = datatype_of(array)
        if given != spec.datatype:
            raise InvalidInput(
                f"input {spec.name!r} is {given}; the model takes {spec.datatype} "
                f"{list(spec.shape)}"
            )
        if len(array.shape) != len(spec.shape) or any(
            d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=False)
        ):
            raise InvalidInput(
                f"input {spec.name!r} has shape {list(array.shape)}; the model takes "
                f"{list(spec.shape)} (-1: any size)"
            )
        if array.dtype != object and array.nbytes > limits.max_tensor_bytes:
            raise InvalidInput(
                f"input {spec.name!r} is {_size(array.nbytes)}, over the limit of "
                f"{_size(limits.max_tensor_bytes)} (--max_request_mib)"
            )
        feeds[spec.name] = array
    if signature.batch_axis:
        rows = {name: a.shape[0] for name, a in feeds.items() if a.ndim}
        if len(set(rows.values())) > 1:
            sizes = ", ".join(f"{n} has {r}" for n, r in rows.items())
            raise InvalidInput(f"the inputs must have the same size on axis 0, the batch: {sizes}")
    return feeds


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


def _size(count: int) -> str:
    return f"{count / MiB:.1f} MiB" if count >= MiB else f"{count:,} bytes"


def datatype_of(array: np.ndarray) -> str:
    """The OIP v2 datatype of a numpy array: object arrays (of bytes or str) are BYTES."""
    if array.dtype == object:
        return "BYTES"
    return DATATYPE_OF.get(array.dtype.name, array.dtype.name)


def _prepared(signature: Signature, feeds: dict[str, np.ndarray]) -> Prepared:
    """Check the values and convert BYTES to the strings ONNX Runtime takes."""
    out = {}
    for spec in signature.inputs:
        array = feeds[spec.name]
        if spec.datatype == "BYTES":
            array = _strings(array, spec.name)
        elif spec.datatype.startswith("FP") and not signature.allow_nan:
            finite = np.isfinite(array)
            if not finite.all():
                where = [int(i) for i in np.argwhere(~finite)[0]]
                raise InvalidInput(
                    f"input {spec.name!r} holds NaN or infinity (first at {where}); this "
                    "model does not take them (servable.json: input.allow_nan is false)"
                )
        out[spec.name] = np.ascontiguousarray(array)
    rows = next((a.shape[0] for a in out.values() if a.ndim), 1)
    key = tuple((n, a.shape[1:]) for n, a in out.items()) if signature.batch_axis else None
    return Prepared(out, key, rows)


def _strings(array: np.ndarray, name: str) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    flat, target = array.reshape(-1), out.reshape(-1)
    for i, element in enumerate(flat):
        if isinstance(element, bytes):
            try:
                element = element.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"input {name!r}: element {i} is not valid UTF-8 ({exc.reason} at byte "
                    f"{exc.start}); send strings encoded as UTF-8"
                ) from None
        target[i] = str(element)
    return out


def wire(signature: Signature) -> Wire:
    """The first input's datatype and shape (the metadata lists every input)."""
    first = signature.inputs[0]
    return Wire(first.datatype, first.shape)


# -- batches ----------------------------------------------------------------------------


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


def check(signature: Signature, info: EngineInfo, answer: Any) -> str | None:
    """Whether the graph's inputs and outputs are the ones servable.json lists, and the
    warm-up answer has every output in its declared shape."""
    for what, specs, tensors in (
        ("input", signature.inputs, info.inputs),
        ("output", signature.outputs, info.outputs),
    ):
        by_name = {t.name: t for t in tensors}
        if set(by_name) != {s.name for s in specs}:
            return (
                f"the model's {what}s are {sorted(by_name)} but servable.json lists "
                f"{sorted(s.name for s in specs)}"
            )
        for spec in specs:
            found = by_name[spec.name]
            if found.dtype and found.dtype != DATATYPES[spec.datatype]:
                return (
                    f"{what} {spec.name!r} is {found.dtype} but servable.json says {spec.datatype}"
                )
            if found.shape and not _fits(spec.shape, found.shape):
                return (
                    f"{what} {spec.name!r} has shape {list(found.shape)} but servable.json "
                    f"says {list(spec.shape)}"
                )
    for spec in signature.outputs:
        value = answer.get(spec.name) if isinstance(answer, dict) else None
        shape = None if value is None else np.shape(value)
        if shape is None or not _fits(spec.shape, shape):
            return (
                f"the warm-up output {spec.name!r} has shape {shape}; servable.json says "
                f"{list(spec.shape)}"
            )
    return None


def _fits(spec: Sequence[int], shape: Sequence[int | str | None]) -> bool:
    """Whether `shape` (an engine's or an array's) agrees with the declared `spec`."""
    return len(spec) == len(shape) and all(
        d == -1 or not isinstance(s, int) or d == s for d, s in zip(spec, shape, strict=True)
    )


OUTPUT = Output(
    answers="tensors",
    parse=parse_output,
    section=output_section,
    stack=stack,
    run=run,
    check=check,
    load_reference=load_tensor_reference,
)
