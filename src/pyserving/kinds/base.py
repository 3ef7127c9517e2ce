"""The input kinds' interface: what every kind module provides, and what they share.

Each kind module (`image`, `features`, `text`, `audio`, `tensor`) provides the same plain
functions:

- `parse(doc, fail)`: the kind's own `fields` of the `Signature` (a frozen dataclass of the
  module's, which writes itself back: `signature.KindFields`), from `servable.json` (the
  whole document; `fail(problem)` makes the ServableError to raise);
- `describe(signature)`: what the version's metadata shows of those fields;
- `row_shape(signature, engine_input)`: the shape of one input without the batch axis;
- `warm_up(signature, row_shape)`: a batch of one input the model must accept;
- `prepare(signature, example, limits, row_shape)`: one request input as the model's row;
- `prepare_batch(signature, batch, limits, row_shape)`: the rows of a batch, as functions;
- `wire(signature)`: the input's OIP v2 datatype and shape;
- `occlusions(signature, row, limits)`: the prepared row with each of its parts hidden in
  turn, for an explanation (an `Occlusion`; the tensor kind refuses).

Only the kind's module reads its fields; everything else asks it. `OFF_LOOP` says whether
preparing an input is CPU work for the thread pool. `OUTPUT` is the kind's output side (an
`Output`): what its models give, how `servable.json` describes that, and how a batch of its
inputs runs. Classifiers share `CLASSES` (scores and labels); the tensor kind gives named
tensors. This module imports no kind module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from pyserving.errors import InvalidInput, ServableError
from pyserving.preprocess import FeatureRows
from pyserving.reference import load_reference
from pyserving.results import ExplanationPart, TensorSpec
from pyserving.signature import Fail, KindFields, Signature, parse_classes

if TYPE_CHECKING:
    from pathlib import Path

    from pyserving.engines.base import Engine, EngineInfo, TensorInfo
    from pyserving.results import Example

Prepare = Callable[[], np.ndarray]
F = TypeVar("F")


def fields_of(signature: Signature, kind: type[F]) -> F:
    """The signature's own fields as the kind's class `kind` (ServableError for another's)."""
    fields = signature.fields
    if not isinstance(fields, kind):
        raise ServableError(
            f"the signature of kind {signature.kind!r} holds {type(fields).__name__}, "
            f"not {kind.__name__}"
        )
    return fields


@dataclass(frozen=True)
class Batch:
    """Inputs for `predict`: encoded `images` (or UTF-8 texts, or encoded audio clips),
    feature rows (a [N, F] matrix, or rows that are each named features or numbers in
    order), or a tensor model's named input `tensors` (BYTES as object arrays of bytes)."""

    images: Sequence[bytes] | None = None
    features: FeatureRows | None = None
    tensors: Mapping[str, np.ndarray] | None = None

    def __len__(self) -> int:
        if self.tensors is not None:
            return 1  # one request: its tensors run together
        if self.images is not None:
            return len(self.images)
        if isinstance(self.features, np.ndarray):
            return len(self.features) if self.features.ndim else 1
        return len(self.features or ())


@dataclass(frozen=True)
class Limits:
    """What the server accepts in one input, from the settings."""

    max_image_pixels: int = 50_000_000
    max_text_chars: int = 100_000
    max_audio_seconds: float = 60.0
    max_tensor_bytes: int = 20 * 1024 * 1024  # one input tensor of a tensor model
    max_explain_inputs: int = 128  # rows one explanation runs, the original included


@dataclass(frozen=True)
class Wire:
    """How an input looks on the wire: its OIP v2 datatype and shape (-1: any size)."""

    datatype: str  # "BYTES" or "FP32"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Output:
    """A kind's output side: what its models give and how a batch of its inputs runs.

    `parse(doc, labels, fail)` reads the `Signature` fields of that side from `servable.json`
    (the whole document) and `labels.txt` (the kind's `fields` write them back). The
    batcher runs `run(engine, stack(inputs))`, which gives one answer per input (an
    exception in place of an answer fails that input alone). `check(signature, engine_info,
    answer)` says what is wrong, if anything, with the engine's outputs and the answer to
    the warm-up input; `load_reference(folder)` reads the version's reference set.
    """

    answers: str  # "classes": classify and predict; "tensors": predict gives named tensors
    parse: Callable[[dict[str, Any], list[str], Fail], dict[str, Any]]
    stack: Callable[[list[Any]], Any]
    run: Callable[[Engine, Any], Any]  # a sequence: one answer per input
    check: Callable[[Signature, EngineInfo, Any], str | None]
    load_reference: Callable[[Path], Any]


def run_scores(engine: Engine, batch: np.ndarray) -> np.ndarray:
    """The scores tensor for a stacked batch of inputs, one row per input."""
    return np.asarray(engine.run(batch)).reshape(len(batch), -1)


def check_classes(signature: Signature, info: EngineInfo, answer: Any) -> str | None:
    """Whether the scores have one column per label, in the graph and for the warm-up."""
    output = next(t for t in info.outputs if t.name == signature.output_name)
    width = output.shape[-1] if output.shape else None
    if isinstance(width, int) and width != signature.num_classes:
        return (
            f"output {signature.output_name!r} has {width} classes but labels.txt has "
            f"{signature.num_classes} labels"
        )
    if np.shape(answer) != (signature.num_classes,):
        return (
            f"output has shape {(1, *np.shape(answer))} for one input; expected "
            f"(1, {signature.num_classes}) to match labels.txt"
        )
    return None


CLASSES = Output(
    answers="classes",
    parse=parse_classes,
    stack=np.stack,
    run=run_scores,
    check=check_classes,
    load_reference=load_reference,
)


def drops(original: float, hidden: np.ndarray) -> np.ndarray:
    """Each part's weight: how much hiding it lowered the class's probability."""
    return original - hidden


@dataclass(frozen=True)
class Occlusion:
    """An input's parts, each hidden in turn, for an explanation.

    The service runs the original row and `rows`, takes the explained class's probability
    of each, and `weigh(p_original, p_rows)` gives one weight per part (by default `drops`:
    p(original) - p(part hidden)). `parts` describe the parts in the input's order (their
    weights are filled in); `grid` is an image's (rows, columns); `method` says in words
    how a part was hidden.
    """

    rows: tuple[np.ndarray, ...]
    parts: tuple[ExplanationPart, ...]
    weigh: Callable[[float, np.ndarray], np.ndarray] = drops
    grid: tuple[int, int] = (0, 0)
    method: str = ""


def check_explain_size(rows: int, what: str, limits: Limits) -> None:
    """InvalidInput when an explanation would run more than `max_explain_inputs` rows."""
    if rows + 1 > limits.max_explain_inputs:
        raise InvalidInput(
            f"explaining this input hides each of its {what} in turn: {rows + 1} inputs to "
            f"run, over the limit of {limits.max_explain_inputs} (--max_explain_inputs); "
            "send a shorter input"
        )


@dataclass(frozen=True)
class Description:
    """What a version's metadata shows of its kind's own fields."""

    features: tuple[str, ...] = ()  # a features model's names, in the model's order
    inputs: tuple[TensorSpec, ...] = ()  # a tensor model's inputs and outputs
    outputs: tuple[TensorSpec, ...] = ()


class KindModule(Protocol):
    """What each kind module provides (see the module docstring)."""

    OFF_LOOP: bool
    OUTPUT: Output

    def parse(self, doc: dict[str, Any], fail: Fail) -> KindFields: ...

    def describe(self, signature: Signature) -> Description: ...

    def row_shape(self, signature: Signature, engine_input: TensorInfo) -> tuple[int, ...]: ...

    def warm_up(self, signature: Signature, row_shape: tuple[int, ...]) -> Any: ...

    def prepare(
        self, signature: Signature, example: Example, limits: Limits, row_shape: tuple[int, ...]
    ) -> np.ndarray: ...

    def prepare_batch(
        self, signature: Signature, batch: Batch, limits: Limits, row_shape: tuple[int, ...]
    ) -> list[Prepare]: ...

    def wire(self, signature: Signature) -> Wire: ...

    def occlusions(self, signature: Signature, row: Any, limits: Limits) -> Occlusion: ...
