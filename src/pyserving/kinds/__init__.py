"""Input kinds: one module each, owning its `servable.json` input section and its inputs.

Each kind module (`image`, `features`, `text`, `audio`) provides the same plain functions:

- `parse(section, fail)`: the kind's fields of the `Signature`, from the `input` section
  of `servable.json` (`fail(problem)` makes the ServableError to raise);
- `section(signature)`: those fields written back as the `input` section;
- `row_shape(signature, engine_input)`: the shape of one input without the batch axis;
- `warm_up(signature, row_shape)`: a batch of one input the model must accept;
- `prepare(signature, example, limits, row_shape)`: one request input as the model's row;
- `prepare_batch(signature, batch, limits, row_shape)`: the rows of a batch, as functions;
- `wire(signature)`: the input's OIP v2 datatype and shape.

`OFF_LOOP` says whether preparing an input is CPU work for the thread pool. The service
asks the module of a version's kind; it never branches on the kind itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pyserving.errors import ServableError
from pyserving.preprocess import FeatureRows

if TYPE_CHECKING:
    from pyserving.engines import TensorInfo
    from pyserving.results import Example
    from pyserving.signature import Signature

KINDS = {
    "image": "pyserving.kinds.image",
    "features": "pyserving.kinds.features",
    "text": "pyserving.kinds.text",
    "audio": "pyserving.kinds.audio",
}
Fail = Callable[[str], ServableError]
Prepare = Callable[[], np.ndarray]


@dataclass(frozen=True)
class Batch:
    """Inputs for `predict`: encoded `images` (or UTF-8 texts, or encoded audio clips), or feature
    rows (a [N, F] matrix, or rows that are each named features or numbers in order)."""

    images: Sequence[bytes] | None = None
    features: FeatureRows | None = None

    def __len__(self) -> int:
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


@dataclass(frozen=True)
class Wire:
    """How an input looks on the wire: its OIP v2 datatype and shape (-1: any size)."""

    datatype: str  # "BYTES" or "FP32"
    shape: tuple[int, ...]


class KindModule(Protocol):
    """What each kind module provides (see the module docstring)."""

    OFF_LOOP: bool

    def parse(self, section: dict[str, Any], fail: Fail) -> dict[str, Any]: ...

    def section(self, signature: Signature) -> dict[str, Any]: ...

    def row_shape(self, signature: Signature, engine_input: TensorInfo) -> tuple[int, ...]: ...

    def warm_up(self, signature: Signature, row_shape: tuple[int, ...]) -> np.ndarray: ...

    def prepare(
        self, signature: Signature, example: Example, limits: Limits, row_shape: tuple[int, ...]
    ) -> np.ndarray: ...

    def prepare_batch(
        self, signature: Signature, batch: Batch, limits: Limits, row_shape: tuple[int, ...]
    ) -> list[Prepare]: ...

    def wire(self, signature: Signature) -> Wire: ...


def kind_module(kind: str) -> KindModule:
    """The module of input kind `kind`; ServableError naming the kinds there are."""
    if kind not in KINDS:
        raise ServableError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")
    module: KindModule = importlib.import_module(KINDS[kind])  # type: ignore[assignment]
    return module
