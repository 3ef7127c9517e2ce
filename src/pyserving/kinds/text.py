"""Text models: UTF-8 text in, a string tensor out, whitespace normalised as in training.

`servable.json` input section: `{"name", "dtype": "string", "whitespace": "collapse" |
"keep"}`. `collapse` turns every run of whitespace into one space and trims the ends, as
`" ".join(text.split())` does; converted scikit-learn graphs do not collapse runs
themselves, so the server must, exactly as the training data was.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from pyserving.errors import InvalidInput
from pyserving.kinds.base import (
    CLASSES,
    Batch,
    Description,
    Limits,
    Occlusion,
    Prepare,
    Wire,
    check_explain_size,
    fields_of,
)
from pyserving.results import ExplanationPart
from pyserving.signature import Fail, Signature, classes_json

if TYPE_CHECKING:
    from pyserving.engines.base import TensorInfo
    from pyserving.results import Example

OFF_LOOP = False  # decoding and splitting up to --max_text_chars takes microseconds
OUTPUT = CLASSES  # scores over the classes of labels.txt
DTYPE = "string"
WHITESPACE = ("collapse", "keep")
UTF8_MAX_BYTES = 4  # per character


@dataclass(frozen=True)
class TextFields:
    """A text model's own fields: how runs of whitespace are normalised before the model."""

    whitespace: str = "collapse"

    def input_json(self) -> dict[str, Any]:
        """The text fields as `servable.json` writes them."""
        return {"whitespace": self.whitespace}

    def output_json(self, signature: Signature) -> dict[str, Any]:
        """Scores over the classes of labels.txt."""
        return classes_json(signature)


def parse(doc: dict[str, Any], fail: Fail) -> TextFields:
    """The text fields of the signature, checked."""
    section = doc["input"]
    if section.get("dtype") != DTYPE:
        raise fail(f"input.dtype {section.get('dtype')!r} must be {DTYPE!r} for a text model")
    whitespace = section.get("whitespace", "collapse")
    if whitespace not in WHITESPACE:
        raise fail(f"input.whitespace {whitespace!r} is not one of {', '.join(WHITESPACE)}")
    return TextFields(whitespace)


def describe(signature: Signature) -> Description:
    """Nothing beyond the wire type."""
    return Description()


def row_shape(signature: Signature, engine_input: TensorInfo) -> tuple[int, ...]:
    """One string: a graph taking [N, 1] gets shape (1,), one taking [N] gets ()."""
    return (1,) if len(engine_input.shape) == 2 else ()


def warm_up(signature: Signature, row_shape: tuple[int, ...]) -> np.ndarray:
    """One short sentence."""
    return np.array(["warm up"], dtype=object).reshape((1, *row_shape))


def normalize(text: str, whitespace: str) -> str:
    """`text` with its whitespace as the signature says: collapsed, or kept as it is."""
    return " ".join(text.split()) if whitespace == "collapse" else text


def decode_text(data: bytes, whitespace: str, max_chars: int) -> str:
    """The UTF-8 text in `data`, normalised. Raises InvalidInput saying what is wrong."""
    if len(data) > UTF8_MAX_BYTES * max_chars:
        raise InvalidInput(
            f"the text is {len(data):,} bytes, over the limit of {max_chars:,} characters "
            "(--max_text_chars)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the text is not valid UTF-8 ({exc.reason} at byte {exc.start} of {len(data):,}, "
            f"{data[exc.start : exc.start + 4]!r}): send the text encoded as UTF-8"
        ) from None
    text = normalize(text, whitespace)
    if not text.strip():
        raise InvalidInput(
            f"the text is empty ({len(data):,} bytes{', only whitespace' if data else ''}): "
            "send at least one character to classify"
        )
    if len(text) > max_chars:
        raise InvalidInput(
            f"the text is {len(text):,} characters, over the limit of {max_chars:,} "
            "(--max_text_chars)"
        )
    return text


def prepare(
    signature: Signature, example: Example, limits: Limits, row_shape: tuple[int, ...]
) -> np.ndarray:
    """The example's UTF-8 text (in `input`) as one string of the model's row shape."""
    if example.features:
        raise InvalidInput("this model takes UTF-8 text in `input`, not features")
    return _row(example.image, signature, limits, row_shape)


def prepare_batch(
    signature: Signature, batch: Batch, limits: Limits, row_shape: tuple[int, ...]
) -> list[Prepare]:
    """One string per UTF-8 text."""
    if batch.images is None:
        raise InvalidInput("this model takes UTF-8 texts (BYTES)")
    return [partial(_row, t, signature, limits, row_shape) for t in batch.images]


def wire(signature: Signature) -> Wire:
    """UTF-8 texts: BYTES [N]."""
    return Wire("BYTES", (-1,))


def occlusions(signature: Signature, row: np.ndarray, limits: Limits) -> Occlusion:
    """The text with each word (split at whitespace) removed in turn.

    Words, not the model's own tokens: the graph's analyzer is not known here, and a word
    is what a reader can weigh.
    """
    text = str(row.reshape(-1)[0])
    words = text.split()
    check_explain_size(len(words), "words", limits)
    rows = tuple(
        np.array([" ".join(words[:i] + words[i + 1 :])], dtype=object).reshape(row.shape)
        for i in range(len(words))
    )
    parts = tuple(ExplanationPart(0.0, name=w) for w in words)
    return Occlusion(rows, parts, method="each word removed")


def _row(
    data: bytes, signature: Signature, limits: Limits, row_shape: tuple[int, ...]
) -> np.ndarray:
    whitespace = fields_of(signature, TextFields).whitespace
    text = decode_text(data, whitespace, limits.max_text_chars)
    return np.array([text], dtype=object).reshape(row_shape)
