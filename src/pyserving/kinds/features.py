"""Features models: named numbers in, a float32 row in the model's feature order out.

`servable.json` input section: `{"name", "dtype": "float32", "features": [names, in order],
"reference": [numbers, in order]}`. `reference` (optional; versions exported before it
existed lack it) is each feature's training mean, recorded by the exporter: an explanation
replaces a feature with it to see what the feature's own value did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pyserving.errors import InvalidInput, WrongMethod
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
from pyserving.preprocess import feature_rows, features_vector
from pyserving.results import ExplanationPart
from pyserving.signature import Fail, Signature, classes_json

if TYPE_CHECKING:
    from pyserving.engines.base import TensorInfo
    from pyserving.results import Example

OFF_LOOP = False  # ordering a few numbers costs less than a trip to the pool
OUTPUT = CLASSES  # scores over the classes of labels.txt


@dataclass(frozen=True)
class FeatureFields:
    """A features model's own fields: its feature names, in the model's order, and each
    feature's reference value (its training mean; empty when the exporter had none)."""

    features: tuple[str, ...]
    reference: tuple[float, ...] = ()

    def input_json(self) -> dict[str, Any]:
        """The feature names (and reference values) as `servable.json` writes them."""
        names: dict[str, Any] = {"features": list(self.features)}
        return {**names, "reference": list(self.reference)} if self.reference else names

    def output_json(self, signature: Signature) -> dict[str, Any]:
        """Scores over the classes of labels.txt."""
        return classes_json(signature)


def parse(doc: dict[str, Any], fail: Fail) -> FeatureFields:
    """The feature names, checked."""
    section = doc["input"]
    features = section.get("features")
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) and f for f in features)
    ):
        raise fail("input.features must be a non-empty list of feature names")
    if len(set(features)) != len(features):
        raise fail("input.features names a feature twice")
    reference = section.get("reference", [])
    if not isinstance(reference, list) or (
        reference
        and (
            len(reference) != len(features)
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in reference
            )
        )
    ):
        raise fail(f"input.reference must be {len(features)} finite numbers, one per feature")
    return FeatureFields(tuple(features), tuple(float(v) for v in reference))


def describe(signature: Signature) -> Description:
    """The feature names, which a client must send."""
    return Description(features=_names(signature))


def row_shape(signature: Signature, engine_input: TensorInfo) -> tuple[int, ...]:
    """One row of F numbers."""
    return (len(_names(signature)),)


def warm_up(signature: Signature, row_shape: tuple[int, ...]) -> np.ndarray:
    """A row of zeros."""
    return np.zeros((1, *row_shape), dtype=np.float32)


def prepare(
    signature: Signature, example: Example, limits: Limits, row_shape: tuple[int, ...]
) -> np.ndarray:
    """The example's named features in the model's order."""
    if example.image:
        raise InvalidInput(
            f"this model takes named features ({', '.join(_names(signature))}), not an image"
        )
    return features_vector(dict(example.features), _names(signature))


def prepare_batch(
    signature: Signature, batch: Batch, limits: Limits, row_shape: tuple[int, ...]
) -> list[Prepare]:
    """The rows of the batch, checked at once (cheap)."""
    if batch.features is None:
        raise InvalidInput(
            f"this model takes features [N, {len(_names(signature))}] "
            f"({', '.join(_names(signature))})"
        )
    return [_given(row) for row in feature_rows(batch.features, _names(signature))]


def wire(signature: Signature) -> Wire:
    """FP32 [N, F]."""
    return Wire("FP32", (-1, len(_names(signature))))


def occlusions(signature: Signature, row: np.ndarray, limits: Limits) -> Occlusion:
    """The row with each feature replaced in turn by its reference value (training mean).

    WrongMethod for a version exported without reference values.
    """
    fields = fields_of(signature, FeatureFields)
    if not fields.reference:
        raise WrongMethod(
            "this version has no reference values for its features (the training means an "
            "explanation puts in place of each feature): export it again with this pyserving, "
            "from a pipeline that starts with a StandardScaler or with reference values given"
        )
    check_explain_size(len(fields.features), "features", limits)
    rows = []
    for i, value in enumerate(fields.reference):
        hidden = row.copy()
        hidden[i] = value
        rows.append(hidden)
    parts = tuple(ExplanationPart(0.0, name=n) for n in fields.features)
    return Occlusion(tuple(rows), parts, method="each feature set to its training mean")


def _given(row: np.ndarray) -> Prepare:
    return lambda: row


def _names(signature: Signature) -> tuple[str, ...]:
    return fields_of(signature, FeatureFields).features
