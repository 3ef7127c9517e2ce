"""The text kind: its servable.json section, UTF-8 decoding, whitespace, limits, warm-up."""

from __future__ import annotations

import numpy as np
import pytest

from pyserving.engines import TensorInfo
from pyserving.errors import InvalidInput, ServableError
from pyserving.kinds import kind_module, text
from pyserving.kinds.base import Batch, Limits
from pyserving.results import Example
from pyserving.signature import Signature

SIG = Signature(
    kind="text",
    input_name="text",
    input_dtype="string",
    output_name="probabilities",
    scores="probabilities",
    labels=("a", "b"),
    fields=text.TextFields(),
)
LIMITS = Limits(max_text_chars=10)


def fail(problem: str) -> ServableError:
    return ServableError(problem)


def test_the_section_round_trips_and_is_checked() -> None:
    section = {"dtype": "string", **SIG.fields.input_json()}
    assert text.parse({"input": section}, fail) == text.TextFields("collapse")
    assert text.parse({"input": {"dtype": "string"}}, fail) == text.TextFields("collapse")
    with pytest.raises(ServableError, match="must be 'string'"):
        text.parse({"input": {"dtype": "float32"}}, fail)
    with pytest.raises(ServableError, match="whitespace 'squash' is not one of collapse, keep"):
        text.parse({"input": {"dtype": "string", "whitespace": "squash"}}, fail)
    assert kind_module("text") is text
    with pytest.raises(ServableError, match="unknown input kind 'video'; expected one of image"):
        kind_module("video")


def test_whitespace_is_collapsed_or_kept_as_the_signature_says() -> None:
    assert text.decode_text(b" a \t\n b  ", "collapse", 10) == "a b"
    assert text.decode_text(b" a  b", "keep", 10) == " a  b"
    assert text.decode_text("žluťoučký".encode(), "collapse", 10) == "žluťoučký"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", r"the text is empty \(0 bytes\)"),
        (b" \n\t ", "only whitespace"),
        (b"abc\xff", r"not valid UTF-8 \(invalid start byte at byte 3 of 4"),
        (b"\xed\xa0\x80", "not valid UTF-8"),  # a lone surrogate, as JSON's "\ud800" encodes
        (b"x" * 11, "11 characters, over the limit of 10 \\(--max_text_chars\\)"),
        (b"x" * 41, "41 bytes, over the limit of 10 characters"),
    ],
)
def test_bad_texts_are_invalid_and_say_why(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        text.prepare(SIG, Example(image=data), LIMITS, (1,))


def test_rows_follow_the_graphs_rank() -> None:
    assert text.row_shape(SIG, TensorInfo("text", "string", (None, 1))) == (1,)
    assert text.row_shape(SIG, TensorInfo("text", "string", (None,))) == ()
    row = text.prepare(SIG, Example(image="  ahoj  světe ".encode()), LIMITS, (1,))
    assert row.shape == (1,) and row.dtype == object and row[0] == "ahoj světe"
    assert text.prepare(SIG, Example(image=b"x"), LIMITS, ()).shape == ()
    warm = text.warm_up(SIG, (1,))
    assert warm.shape == (1, 1) and warm.dtype == object
    assert text.warm_up(SIG, ()).shape == (1,)


def test_batches_and_wrong_inputs() -> None:
    prepares = text.prepare_batch(SIG, Batch(images=[b"a", b" b "]), LIMITS, (1,))
    assert np.stack([p() for p in prepares]).tolist() == [["a"], ["b"]]
    with pytest.raises(InvalidInput, match="takes UTF-8 texts"):
        text.prepare_batch(SIG, Batch(features=[[1.0]]), LIMITS, (1,))
    with pytest.raises(InvalidInput, match="takes UTF-8 text in `input`, not features"):
        text.prepare(SIG, Example(features={"a": 1.0}), LIMITS, (1,))
    assert text.wire(SIG).datatype == "BYTES" and text.wire(SIG).shape == (-1,)
