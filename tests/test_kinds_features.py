"""The features kind: its servable.json section, named and ordered rows, wire shape."""

from __future__ import annotations

import numpy as np
import pytest

from pyserving.engines import TensorInfo
from pyserving.errors import InvalidInput, ServableError
from pyserving.kinds import features
from pyserving.kinds.base import Batch, Description, Limits
from pyserving.results import Example
from pyserving.signature import Signature

SIG = Signature(
    kind="features",
    input_name="x",
    input_dtype="float32",
    output_name="p",
    scores="probabilities",
    labels=("A", "B"),
    fields=features.FeatureFields(("a", "b")),
)


def fail(problem: str) -> ServableError:
    return ServableError(problem)


def test_the_section_round_trips_and_is_checked() -> None:
    assert SIG.fields.input_json() == {"features": ["a", "b"]}
    assert features.parse({"input": SIG.fields.input_json()}, fail) == SIG.fields
    with pytest.raises(ServableError, match="names a feature twice"):
        features.parse({"input": {"features": ["a", "a"]}}, fail)
    with pytest.raises(ServableError, match="non-empty list of feature names"):
        features.parse({"input": {"features": []}}, fail)
    assert features.describe(SIG) == Description(features=("a", "b"))


def test_rows_are_in_the_models_order() -> None:
    shape = features.row_shape(SIG, TensorInfo("x", "float32", (None, 2)))
    assert shape == (2,)
    row = features.prepare(SIG, Example(features={"b": 2.0, "a": 1.0}), Limits(), shape)
    assert row.tolist() == [1.0, 2.0]
    rows = features.prepare_batch(SIG, Batch(features=np.eye(2)), Limits(), shape)
    assert [r().tolist() for r in rows] == [[1.0, 0.0], [0.0, 1.0]]
    assert features.warm_up(SIG, shape).shape == (1, 2)
    assert features.wire(SIG).shape == (-1, 2) and features.wire(SIG).datatype == "FP32"


def test_wrong_inputs_say_what_the_model_takes() -> None:
    with pytest.raises(InvalidInput, match=r"takes named features \(a, b\), not an image"):
        features.prepare(SIG, Example(image=b"png"), Limits(), (2,))
    with pytest.raises(InvalidInput, match=r"takes features \[N, 2\]"):
        features.prepare_batch(SIG, Batch(images=[b"x"]), Limits(), (2,))
