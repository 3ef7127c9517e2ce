"""The OIP v2 conversion both v2 adapters use: wire parts ↔ numpy, checks against the model."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pyserving.core import oip
from pyserving.core.service import Scores
from pyserving.errors import InvalidInput
from pyserving.results import ModelMetadata

IMAGE = ModelMetadata(
    "colours", 1, (1, 2), "image", "image", (), ("red", "green", "blue"), 2, "onnxruntime", "f32"
)
FEATURES = ModelMetadata(
    "lin", 3, (3,), "features", "x", ("a", "b"), ("A", "B"), 1, "openvino", "bf16", "FP32", (-1, 2)
)


def test_bytes_tensors_round_trip_through_the_binary_layout() -> None:
    elements = [b"", b"cat", b"\x00" * 5]
    raw = oip.encode_bytes_tensor(elements)
    assert raw[:4] == struct.pack("<I", 0)
    assert oip.decode_bytes_tensor(raw, "t") == elements
    with pytest.raises(InvalidInput, match="length prefix"):
        oip.decode_bytes_tensor(raw + b"\x01", "t")
    with pytest.raises(InvalidInput, match="runs past"):
        oip.decode_bytes_tensor(struct.pack("<I", 9) + b"abc", "t")


def test_input_tensor_from_raw_bytes_elements_or_numbers() -> None:
    raw = oip.input_tensor("image", "BYTES", [2], oip.encode_bytes_tensor([b"a", b"bc"]), "w")
    given = oip.input_tensor("image", "BYTES", [2], [b"a", b"bc"], "w")
    assert raw == given and raw.elements == (b"a", b"bc")
    little = np.array([[1, 2]], dtype="<f4").tobytes()
    from_raw = oip.input_tensor("x", "FP32", [1, 2], little, "w")
    from_list = oip.input_tensor("x", "FP64", [1, 2], [[1, 2]], "w")
    assert from_raw.array is not None and from_list.array is not None
    np.testing.assert_array_equal(from_raw.array, from_list.array)
    assert from_list.array.dtype == np.float64 and from_list.array.shape == (1, 2)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("BF16", [1], [1], "'BF16' is not a numeric datatype"),
        ("FP32", [1, 2], [1, 2, 3], r"needs 2 FP32 values, got 3"),
        ("FP32", [-1], [], "non-negative"),
        ("FP32", [1], ["x"], "FP32 data must be numbers, got 'x'"),
        ("INT64", [2], [1, 2.5], "INT64 data must be integers"),
        ("UINT8", [2], [1, 300], "300 is out of the range of UINT8"),
        ("BOOL", [1], [1], "BOOL data must be true or false"),
        ("FP32", [2, 2], [[1, 2], [3]], "ragged"),
        ("INT32", [1], b"\x00\x00", "not a whole number of INT32 values"),
    ],
)
def test_input_tensor_refuses_what_it_cannot_read(
    datatype: str, shape: list[int], data: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        oip.input_tensor("x", datatype, shape, data, "inputs[0]")


def test_batch_checks_the_request_against_the_model() -> None:
    images = oip.input_tensor("image", "BYTES", [2, 1], [b"a", b"b"], "w")
    assert oip.batch(IMAGE, [images], []).images == (b"a", b"b")
    rows = oip.input_tensor("x", "FP32", [1, 2], [[1, 2]], "w")
    features = oip.batch(FEATURES, [rows], [oip.RequestedOutput("probabilities")]).features
    assert isinstance(features, np.ndarray) and features.shape == (1, 2)
    with pytest.raises(InvalidInput, match="exactly one input named 'image'"):
        oip.batch(IMAGE, [images, images], [])
    with pytest.raises(InvalidInput, match="takes an input named 'x'"):
        oip.batch(FEATURES, [images], [])
    with pytest.raises(InvalidInput, match="unknown output 'logits'"):
        oip.batch(IMAGE, [images], [oip.RequestedOutput("logits")])
    with pytest.raises(InvalidInput, match="must be BYTES"):
        oip.batch(IMAGE, [oip.input_tensor("image", "FP32", [1], [1.0], "w")], [])
    with pytest.raises(InvalidInput, match="'INT8' is not accepted here; use FP32"):
        oip.batch(FEATURES, [oip.input_tensor("x", "INT8", [1, 2], [[1, 2]], "w")], [])
    with pytest.raises(InvalidInput, match=r"shape \[3\] but 2 elements"):
        oip.batch(IMAGE, [oip.input_tensor("image", "BYTES", [3], [b"a", b"b"], "w")], [])
    with pytest.raises(InvalidInput, match="FP32"):
        oip.batch(FEATURES, [oip.input_tensor("x", "BYTES", [1], [b"a"], "w")], [])


def test_outputs_probabilities_or_classification_strings() -> None:
    probs = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    scores = Scores(probs, ("red", "green", "blue"), "colours", 1)
    (plain,) = oip.outputs(scores, [])
    assert (plain.name, plain.datatype, plain.shape) == ("probabilities", "FP32", [1, 3])
    assert oip.flat(plain) == pytest.approx([0.1, 0.7, 0.2])
    assert oip.raw(plain) == probs.astype("<f4").tobytes()
    (top,) = oip.outputs(scores, [oip.RequestedOutput("probabilities", 2, binary=True)])
    assert (top.datatype, top.shape, top.binary) == ("BYTES", [1, 2], True)
    assert oip.flat(top) == [b"0.700000:1:green", b"0.200000:2:blue"]
    assert oip.decode_bytes_tensor(oip.raw(top), "t") == oip.flat(top)


def test_metadata_from_plain_values_names_the_engine() -> None:
    image = oip.model_metadata(IMAGE)
    assert image["versions"] == ["1", "2"] and image["platform"] == oip.PLATFORM
    assert image["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}]
    assert image["outputs"][0]["shape"] == [-1, 3]
    features = oip.model_metadata(FEATURES)
    assert features["inputs"][0]["shape"] == [-1, 2]
    assert features["parameters"] == {
        "kind": "features",
        "features": ["a", "b"],
        "labels": 2,
        "engine": "openvino",
        "precision": "bf16",
    }
    assert oip.server_metadata()["extensions"] == [
        "classification",
        "binary_tensor_data",
        "model_configuration",
    ]


@pytest.mark.parametrize(("text", "version"), [("", 0), ("7", 7)])
def test_versions_parse(text: str, version: int) -> None:
    assert oip.parse_version(text) == version


@pytest.mark.parametrize("text", ["0", "-1", "v2", "1.5"])
def test_bad_versions_are_invalid(text: str) -> None:
    with pytest.raises(InvalidInput, match="positive integer"):
        oip.parse_version(text)


@pytest.mark.parametrize("shape", [[0, 2**40, 2**40], [2**31 + 1], [1] * 33, [2**62, 2**62]])
def test_shapes_no_array_can_have_are_invalid_even_with_no_data(shape: list[int]) -> None:
    with pytest.raises(InvalidInput, match="is too large"):
        oip.input_tensor("x", "BYTES", shape, [], "input 'x'")
    with pytest.raises(InvalidInput, match="is too large"):
        oip.input_tensor("x", "FP32", shape, b"", "input 'x'")
