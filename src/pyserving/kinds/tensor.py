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
request at a time (`pyserving.tensors` groups, runs and splits the batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from pyserving.errors import InvalidInput, WrongMethod
from pyserving.kinds.base import (
    Batch,
    Description,
    Limits,
    Occlusion,
    Output,
    Prepare,
    Wire,
    fields_of,
)
from pyserving.reference import load_tensor_reference
from pyserving.results import TensorSpec
from pyserving.signature import Fail, Signature
from pyserving.tensors import DATATYPES, Group, Prepared, datatype_of, run, stack
from pyserving.units import MiB

if TYPE_CHECKING:
    from pyserving.engines.base import EngineInfo, TensorInfo
    from pyserving.results import Example

OFF_LOOP = True  # checking and converting megabytes of numbers is CPU work
FREE_AXIS = 4  # elements a generated input gets on an axis of any size (not the batch)

USE_PREDICT = (
    "it is not a classifier: it takes named tensors and answers with its outputs. "
    "Use predict: OIP v2 infer (/v2/models/{name}/infer, gRPC ModelInfer), TF Serving "
    ":predict, or `pyserving predict`"
)


# -- servable.json ----------------------------------------------------------------------


@dataclass(frozen=True)
class TensorFields:
    """A tensor model's own fields: every input and output; whether axis 0 of all of them
    is the batch (so requests may be concatenated); whether float inputs may hold NaN or
    infinities."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch_axis: bool = False
    allow_nan: bool = False

    def input_json(self) -> dict[str, Any]:
        """The input fields as `servable.json` writes them."""
        return {
            "tensors": [_spec_json(t) for t in self.inputs],
            "batch_axis": self.batch_axis,
            "allow_nan": self.allow_nan,
        }

    def output_json(self, signature: Signature) -> dict[str, Any]:
        """Every output, as `servable.json` writes them."""
        return {
            "output": {
                "name": signature.output_name,
                "tensors": [_spec_json(t) for t in self.outputs],
            }
        }


def parse(doc: dict[str, Any], fail: Fail) -> TensorFields:
    """A tensor model's fields, from the `input` and `output` sections, checked."""
    section = doc["input"]
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
    return TensorFields(inputs, _outputs(doc, fail), **flags)


def parse_output(doc: dict[str, Any], labels: list[str], fail: Fail) -> dict[str, Any]:
    """The first output's name (`parse` reads every output); `labels.txt` must be empty."""
    outputs = _outputs(doc, fail)
    if labels:
        raise fail(
            f"labels.txt has {len(labels)} labels; a tensor model has no classes, so it must "
            "be empty"
        )
    return {"output_name": outputs[0].name}


def _outputs(doc: dict[str, Any], fail: Fail) -> tuple[TensorSpec, ...]:
    out = doc.get("output")
    if not isinstance(out, dict):
        raise fail("missing the 'output' object")
    outputs = _specs(out.get("tensors"), "output.tensors", fail)
    if out.get("name") != outputs[0].name:
        raise fail(f"output.name must be the first output in output.tensors ({outputs[0].name!r})")
    return outputs


def describe(signature: Signature) -> Description:
    """Every input and output: the metadata lists them."""
    fields = fields_of(signature, TensorFields)
    return Description(inputs=fields.inputs, outputs=fields.outputs)


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
    return stack(
        [_prepared(signature, sample_feeds(fields_of(signature, TensorFields).inputs, rows=1))]
    )


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
    # The batcher takes a tensor model's `Prepared` where classifiers give arrays.
    return [partial(_prepared, signature, feeds)]  # type: ignore[list-item]


def check_inputs(
    signature: Signature, tensors: Mapping[str, np.ndarray], limits: Limits
) -> dict[str, np.ndarray]:
    """The request's tensors in the model's order; InvalidInput naming what is wrong."""
    fields = fields_of(signature, TensorFields)
    takes = ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in fields.inputs)
    declared = {s.name for s in fields.inputs}
    unknown = [n for n in tensors if n not in declared]
    if unknown:
        raise InvalidInput(f"unknown input {unknown[0]!r}: the model takes {takes}")
    missing = [s.name for s in fields.inputs if s.name not in tensors]
    if missing:
        raise InvalidInput(f"missing input {missing[0]!r}: the model takes {takes}")
    feeds = {}
    for spec in fields.inputs:
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
    if fields.batch_axis:
        rows = {name: a.shape[0] for name, a in feeds.items() if a.ndim}
        if len(set(rows.values())) > 1:
            sizes = ", ".join(f"{n} has {r}" for n, r in rows.items())
            raise InvalidInput(f"the inputs must have the same size on axis 0, the batch: {sizes}")
    return feeds


def _size(count: int) -> str:
    return f"{count / MiB:.1f} MiB" if count >= MiB else f"{count:,} bytes"


def _prepared(signature: Signature, feeds: dict[str, np.ndarray]) -> Prepared:
    """Check the values and convert BYTES to the strings ONNX Runtime takes."""
    fields = fields_of(signature, TensorFields)
    out = {}
    for spec in fields.inputs:
        array = feeds[spec.name]
        if spec.datatype == "BYTES":
            array = _strings(array, spec.name)
        elif spec.datatype.startswith("FP") and not fields.allow_nan:
            finite = np.isfinite(array)
            if not finite.all():
                where = [int(i) for i in np.argwhere(~finite)[0]]
                raise InvalidInput(
                    f"input {spec.name!r} holds NaN or infinity (first at {where}); this "
                    "model does not take them (servable.json: input.allow_nan is false)"
                )
        out[spec.name] = np.ascontiguousarray(array)
    rows = next((a.shape[0] for a in out.values() if a.ndim), 1)
    key = tuple((n, a.shape[1:]) for n, a in out.items()) if fields.batch_axis else None
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


def occlusions(signature: Signature, row: Any, limits: Limits) -> Occlusion:
    """Refused: an explanation weighs parts of an input by one class's probability, and a
    tensor model has neither classes nor parts a server can know."""
    raise WrongMethod(
        "a tensor model cannot be explained: an explanation hides parts of an input and "
        "watches one class's probability, and a tensor model's outputs are not classes"
    )


def wire(signature: Signature) -> Wire:
    """The first input's datatype and shape (the metadata lists every input)."""
    first = fields_of(signature, TensorFields).inputs[0]
    return Wire(first.datatype, first.shape)


def check(signature: Signature, info: EngineInfo, answer: Any) -> str | None:
    """Whether the graph's inputs and outputs are the ones servable.json lists, and the
    warm-up answer has every output in its declared shape."""
    fields = fields_of(signature, TensorFields)
    for what, specs, tensors in (
        ("input", fields.inputs, info.inputs),
        ("output", fields.outputs, info.outputs),
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
    for spec in fields.outputs:
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
    stack=stack,
    run=run,
    check=check,
    load_reference=load_tensor_reference,
)
