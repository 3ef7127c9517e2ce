"""`pyserving predict`: --input values as the tensors a model takes, its answer printed.

Values on the command line are shaped by the model's input (from its v2 metadata) and
typed by its datatype; a .npy file keeps its shape and is cast to the datatype when numpy
can do that without changing the kind of number.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pyserving.cli.remote import add_remote_flags, connect
from pyserving.client import Client
from pyserving.errors import ConfigError, UsageError
from pyserving.results import Inference, Tensor, TensorSpec


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object)."""
    predict = commands.add_parser(
        "predict", help="run a tensor model with a running server (OIP v2 over gRPC)"
    )
    predict.add_argument("--model", default="", help="model name (default: the server's)")
    predict.add_argument("--version", type=int, default=0, help="0: the newest")
    predict.add_argument(
        "--label", default="", help="the version a version label names (instead of --version)"
    )
    predict.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="an input: comma-separated values, shaped as the model takes them, or a .npy "
        "file (NAME=x.npy); repeat for each input (NAME= may be left out for a one-input model)",
    )
    predict.add_argument(
        "--output", action="append", default=[], help="an output to return (default: all)"
    )
    predict.add_argument("--json", action="store_true", help="print the answer as JSON")
    add_remote_flags(predict, timeout=30.0)
    predict.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run `pyserving predict` with its parsed flags; the exit code."""
    return predict(args, partial(connect, args))


def predict(args: argparse.Namespace, connect: Callable[[], Client]) -> int:
    """Run `pyserving predict`: read the --input values, call the server, print the answer.

    `connect` gives the client (the CLI's one builder)."""
    if args.label and args.version:
        raise UsageError("give --version or --label, not both")
    with connect() as client:
        model, version = args.model, args.version
        if args.label:
            model, version = client.labelled_version(args.model, args.label)
        specs, _ = client.model_tensors(model, version)
        takes = ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in specs)
        if not args.input:
            raise UsageError(f"give --input NAME=VALUES for each input; the model takes {takes}")
        tensors = [_input_tensor(text, specs, takes) for text in args.input]
        started = time.perf_counter()
        result = client.predict(tensors, model, version, args.output)
        elapsed_ms = (time.perf_counter() - started) * 1000
    if args.json:
        print(json.dumps(_inference_json(result)))
        return 0
    print(f"model {result.model_name}, version {result.model_version} ({elapsed_ms:.1f} ms)")
    for out in result.outputs:
        print(f"{out.name}  {out.datatype} {list(out.shape)}")
        print(f"  {_nested(_plain(out), out.shape)}")
    return 0


def _input_tensor(text: str, specs: Sequence[TensorSpec], takes: str) -> Tensor:
    """`--input NAME=VALUES` (or VALUES for a one-input model, or NAME=FILE.npy) as a tensor
    of the model's datatype, shaped as the model takes it."""
    name, sep, value = text.partition("=")
    by_name = {s.name: s for s in specs}
    if not sep:
        if len(specs) != 1:
            raise UsageError(
                f"--input {text!r}: say which input (NAME=VALUES); the model takes {takes}"
            )
        name, value = specs[0].name, text
    spec = by_name.get(name)
    if spec is None:
        raise UsageError(f"--input {text!r}: the model has no input {name!r}; it takes {takes}")
    if value.endswith(".npy"):
        return _npy_tensor(Path(value), spec)
    values = [_parse_value(v.strip(), spec) for v in value.split(",")] if value else []
    return Tensor(spec.name, spec.datatype, _shape_for(len(values), spec), tuple(values))


def _parse_value(text: str, spec: TensorSpec) -> Any:
    try:
        if spec.datatype == "BYTES":
            return text.encode("utf-8")
        if spec.datatype == "BOOL":
            return {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        if spec.datatype.startswith("FP"):
            return float(text)
        return int(text)
    except (KeyError, ValueError):
        raise UsageError(f"input {spec.name!r} is {spec.datatype}: {text!r} is not one") from None


def _shape_for(count: int, spec: TensorSpec) -> tuple[int, ...]:
    """The model's shape for `count` values: the last axis of any size takes what the fixed
    axes leave, other axes of any size get 1 ([-1, 3] and 6 values: [2, 3]; [-1, -1]: [1, 6])."""
    free = [i for i, d in enumerate(spec.shape) if d < 0]
    known = math.prod(d for d in spec.shape if d >= 0)
    if not free and count == known:
        return spec.shape
    if free and known and count % known == 0:
        shape = [1 if d < 0 else d for d in spec.shape]
        shape[free[-1]] = count // known
        return tuple(shape)
    raise UsageError(
        f"input {spec.name!r} takes shape {list(spec.shape)}: {count} values do not fit it "
        "(give a .npy file for any other shape)"
    )


def _npy_tensor(path: Path, spec: TensorSpec) -> Tensor:
    import numpy as np

    from pyserving.tensors import DATATYPES

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as a .npy file: {exc}") from exc
    if spec.datatype == "BYTES":
        values: tuple[Any, ...] = tuple(str(v).encode("utf-8") for v in array.reshape(-1))
    else:
        dtype = np.dtype(DATATYPES[spec.datatype])
        if not np.can_cast(array.dtype, dtype, "same_kind"):
            raise ConfigError(
                f"{path} holds {array.dtype}; input {spec.name!r} takes {spec.datatype}"
            )
        values = tuple(array.astype(dtype).reshape(-1).tolist())
    return Tensor(spec.name, spec.datatype, tuple(array.shape), values)


def _plain(tensor: Tensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", "replace") for v in tensor.values]
    return list(tensor.values)


def _nested(values: list[Any], shape: Sequence[int]) -> Any:
    """Flat row-major values as nested lists of `shape`."""
    if not shape:
        return values[0] if values else None
    step = math.prod(shape[1:])
    return [_nested(values[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _inference_json(result: Inference) -> dict[str, Any]:
    return {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "outputs": [
            {
                "name": t.name,
                "datatype": t.datatype,
                "shape": list(t.shape),
                "data": _nested(_plain(t), t.shape),
            }
            for t in result.outputs
        ],
    }
