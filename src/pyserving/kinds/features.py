"""Features models: named numbers in, a float32 row in the model's feature order out.

`servable.json` input section: `{"name", "dtype": "float32", "features": [names, in order]}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pyserving.errors import InvalidInput
from pyserving.kinds.base import CLASSES, Batch, Fail, Limits, Prepare, Wire
from pyserving.preprocess import feature_rows, features_vector

if TYPE_CHECKING:
    from pyserving.engines.base import TensorInfo
    from pyserving.results import Example
    from pyserving.signature import Signature

OFF_LOOP = False  # ordering a few numbers costs less than a trip to the pool
OUTPUT = CLASSES  # scores over the classes of labels.txt


def parse(section: dict[str, Any], fail: Fail) -> dict[str, Any]:
    """The feature names, checked."""
    features = section.get("features")
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) and f for f in features)
    ):
        raise fail("input.features must be a non-empty list of feature names")
    if len(set(features)) != len(features):
        raise fail("input.features names a feature twice")
    return {"features": tuple(features)}


def section(signature: Signature) -> dict[str, Any]:
    """The feature names as `servable.json` writes them."""
    return {"features": list(signature.features)}


def row_shape(signature: Signature, engine_input: TensorInfo) -> tuple[int, ...]:
    """One row of F numbers."""
    return (len(signature.features),)


def warm_up(signature: Signature, row_shape: tuple[int, ...]) -> np.ndarray:
    """A row of zeros."""
    return np.zeros((1, *row_shape), dtype=np.float32)


def prepare(
    signature: Signature, example: Example, limits: Limits, row_shape: tuple[int, ...]
) -> np.ndarray:
    """The example's named features in the model's order."""
    if example.image:
        raise InvalidInput(
            f"this model takes named features ({', '.join(signature.features)}), not an image"
        )
    return features_vector(dict(example.features), signature.features)


def prepare_batch(
    signature: Signature, batch: Batch, limits: Limits, row_shape: tuple[int, ...]
) -> list[Prepare]:
    """The rows of the batch, checked at once (cheap)."""
    if batch.features is None:
        raise InvalidInput(
            f"this model takes features [N, {len(signature.features)}] "
            f"({', '.join(signature.features)})"
        )
    return [_given(row) for row in feature_rows(batch.features, signature.features)]


def wire(signature: Signature) -> Wire:
    """FP32 [N, F]."""
    return Wire("FP32", (-1, len(signature.features)))


def _given(row: np.ndarray) -> Prepare:
    return lambda: row
