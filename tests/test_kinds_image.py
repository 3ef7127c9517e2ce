"""The image kind: its servable.json section, decoding through it, warm-up, wire shape."""

from __future__ import annotations

import pytest

from pyserving.engines.base import TensorInfo
from pyserving.errors import InvalidInput, ServableError
from pyserving.kinds import features, image
from pyserving.kinds.base import Batch, Description, Limits, fields_of
from pyserving.results import Example
from pyserving.signature import Signature
from tests.onnx_models import png

SIG = Signature(
    kind="image",
    input_name="image",
    input_dtype="uint8",
    output_name="logits",
    scores="logits",
    labels=("r", "g", "b"),
    fields=image.ImageFields(8, 6),
)


def fail(problem: str) -> ServableError:
    return ServableError(problem)


def test_the_section_round_trips_and_is_checked() -> None:
    section = {"dtype": "uint8", **SIG.fields.input_json()}
    assert section == {
        "dtype": "uint8",
        "height": 8,
        "width": 6,
        "layout": "NHWC",
        "resize": "bilinear",
    }
    assert image.parse({"input": section}, fail) == SIG.fields
    with pytest.raises(ServableError, match="input.resize 'magic' is not one of bilinear"):
        image.parse({"input": {**section, "resize": "magic"}}, fail)
    with pytest.raises(ServableError, match="input.dtype 'string' is not one of uint8"):
        image.parse({"input": {**section, "dtype": "string"}}, fail)
    with pytest.raises(ServableError, match="positive integers, got 0×6"):
        image.parse({"input": {**section, "height": 0}}, fail)
    assert image.describe(SIG) == Description()


def test_images_decode_to_the_signatures_size() -> None:
    shape = image.row_shape(SIG, TensorInfo("image", "uint8", (None, 8, 6, 3)))
    assert shape == (8, 6, 3)
    assert image.prepare(SIG, Example(image=png((255, 0, 0))), Limits(), shape).shape == shape
    (decode,) = image.prepare_batch(SIG, Batch(images=[png((0, 0, 255))]), Limits(), shape)
    assert decode()[0, 0].tolist() == [0, 0, 255]
    assert image.warm_up(SIG, shape).shape == (1, 8, 6, 3)
    assert image.wire(SIG).datatype == "BYTES"


def test_wrong_inputs_say_what_the_model_takes() -> None:
    with pytest.raises(InvalidInput, match="takes an image in `input`, not features"):
        image.prepare(SIG, Example(features={"a": 1.0}), Limits(), (8, 6, 3))
    with pytest.raises(InvalidInput, match="takes encoded images"):
        image.prepare_batch(SIG, Batch(features=[[1.0]]), Limits(), (8, 6, 3))
    with pytest.raises(InvalidInput, match="over the limit of 10"):
        image.prepare(SIG, Example(image=png((1, 2, 3))), Limits(max_image_pixels=10), (8, 6, 3))


def test_a_signature_holding_another_kinds_fields_is_refused() -> None:
    assert fields_of(SIG, image.ImageFields) == image.ImageFields(8, 6, "NHWC", "bilinear")
    mixed = Signature(
        kind="image",
        input_name="image",
        input_dtype="uint8",
        output_name="logits",
        labels=("r", "g", "b"),
        fields=features.FeatureFields(("a", "b")),
    )
    with pytest.raises(ServableError, match="kind 'image' holds FeatureFields, not ImageFields"):
        image.prepare(mixed, Example(image=png((1, 2, 3))), Limits(), (8, 6, 3))
