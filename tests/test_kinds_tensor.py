"""The tensor kind: its servable.json sections, checks of named inputs, batches, refusals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from pyserving import tensors
from pyserving.engines import Engine, EngineOptions, load_engine
from pyserving.errors import InvalidInput, ServableError, WrongMethod
from pyserving.kinds import kind_module, tensor
from pyserving.kinds.base import Batch, Description, Limits
from pyserving.results import Example, TensorSpec
from pyserving.signature import Signature
from tests.onnx_models import regression_model

X = TensorSpec("x", "FP32", (-1, 3))
Y = TensorSpec("y", "FP32", (-1, 2))
REG_FIELDS = tensor.TensorFields((X,), (Y,), batch_axis=True)
REG = Signature(
    kind="tensor", input_name="x", input_dtype="float32", output_name="y", fields=REG_FIELDS
)
A, B = TensorSpec("a", "INT64", (-1,)), TensorSpec("b", "INT64", (-1,))
SUM_PRODUCT = Signature(
    kind="tensor",
    input_name="a",
    input_dtype="int64",
    output_name="sum",
    fields=tensor.TensorFields(
        (A, B),
        (TensorSpec("sum", "INT64", (-1,)), TensorSpec("product", "INT64", (-1,))),
        batch_axis=True,
    ),
)
LIMITS = Limits(max_tensor_bytes=1024)
W = np.arange(6, dtype=np.float32).reshape(3, 2) / 4
BIAS = np.array([0.5, -1.0], dtype=np.float32)


def fail(problem: str) -> ServableError:
    return ServableError(problem)


def prepared(sig: Signature, **named: np.ndarray) -> tensors.Prepared:
    (prepare,) = tensor.prepare_batch(sig, Batch(tensors=named), LIMITS, ())
    result = prepare()
    assert isinstance(result, tensors.Prepared)
    return result


def test_the_sections_round_trip() -> None:
    section = {"name": "x", "dtype": "float32", **REG.fields.input_json()}
    assert section["tensors"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    doc = REG.fields.output_json(REG)
    assert doc == {
        "output": {"name": "y", "tensors": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}
    }
    assert tensor.parse({"input": section, **doc}, fail) == REG.fields
    assert tensor.parse_output(doc, [], fail) == {"output_name": "y"}
    assert tensor.describe(REG) == Description(inputs=(X,), outputs=(Y,))
    assert kind_module("tensor") is tensor and tensor.OUTPUT.answers == "tensors"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"tensors": []}, "input.tensors must be a non-empty list"),
        ({"tensors": [{"name": "x", "datatype": "FP8", "shape": []}]}, "'FP8' is not one of BOOL"),
        ({"tensors": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}, r"shape must be a list"),
        (
            {"tensors": [{"name": "x", "datatype": "FP32", "shape": [True]}]},
            r"shape must be a list",
        ),
        (
            {"tensors": [{"name": "x", "datatype": "FP32", "shape": []}] * 2},
            "names a tensor twice",
        ),
        (
            {
                "name": "z",
                "dtype": "float32",
                "tensors": [{"name": "x", "datatype": "FP32", "shape": []}],
            },
            "must be those of the first input",
        ),
        (
            {
                "name": "x",
                "dtype": "float32",
                "allow_nan": "yes",
                "tensors": [{"name": "x", "datatype": "FP32", "shape": []}],
            },
            "allow_nan must be true or false",
        ),
    ],
)
def test_bad_input_sections_are_refused(section: dict[str, object], problem: str) -> None:
    with pytest.raises(ServableError, match=problem):
        tensor.parse({"input": section, **REG.fields.output_json(REG)}, fail)


def test_a_tensor_model_has_no_labels() -> None:
    with pytest.raises(
        ServableError, match="labels.txt has 2 labels; a tensor model has no classes"
    ):
        tensor.parse_output(REG.fields.output_json(REG), ["a", "b"], fail)
    with pytest.raises(ServableError, match="output.name must be the first output"):
        tensor.parse_output(
            {"output": {"name": "z", "tensors": [{"name": "y", "datatype": "FP32", "shape": []}]}},
            [],
            fail,
        )


def test_inputs_are_checked_by_name_datatype_shape_and_size() -> None:
    good = np.ones((2, 3), np.float32)
    assert prepared(REG, x=good).feeds["x"].shape == (2, 3)
    cases: list[tuple[dict[str, np.ndarray], str]] = [
        ({"x": good, "z": good}, "unknown input 'z': the model takes x \\(FP32 \\[-1, 3\\]\\)"),
        ({}, "missing input 'x'"),
        ({"x": good.astype(np.float64)}, "input 'x' is FP64; the model takes FP32"),
        ({"x": np.array(["1"], dtype=object)}, "input 'x' is BYTES"),
        (
            {"x": np.ones((2, 4), np.float32)},
            r"input 'x' has shape \[2, 4\]; the model takes \[-1, 3\]",
        ),
        ({"x": np.ones(3, np.float32)}, r"has shape \[3\]"),
        (
            {"x": np.ones((100, 3), np.float32)},
            r"input 'x' is 1,200 bytes, over the limit of 1,024 bytes \(--max_request_mib\)",
        ),
    ]
    for named, problem in cases:
        with pytest.raises(InvalidInput, match=problem):
            tensor.prepare_batch(REG, Batch(tensors=named), LIMITS, ())
    with pytest.raises(InvalidInput, match="same size on axis 0, the batch: a has 3, b has 2"):
        tensor.prepare_batch(
            SUM_PRODUCT,
            Batch(tensors={"a": np.ones(3, np.int64), "b": np.ones(2, np.int64)}),
            LIMITS,
            (),
        )


def test_nan_and_infinity_are_refused_unless_the_model_allows_them() -> None:
    x = np.array([[1, np.nan, 3]], np.float32)
    with pytest.raises(
        InvalidInput, match=r"input 'x' holds NaN or infinity \(first at \[0, 1\]\)"
    ):
        prepared(REG, x=x)
    with pytest.raises(InvalidInput, match="NaN or infinity"):
        prepared(REG, x=np.array([[1, 2, np.inf]], np.float32))
    allowing = replace(REG, fields=replace(REG_FIELDS, allow_nan=True))
    assert np.isnan(prepared(allowing, x=x).feeds["x"][0, 1])


def test_bytes_become_strings_and_must_be_utf8() -> None:
    sig = Signature(
        kind="tensor",
        input_name="s",
        input_dtype="string",
        output_name="n",
        fields=tensor.TensorFields(
            (TensorSpec("s", "BYTES", (-1,)),), (TensorSpec("n", "INT64", (-1,)),)
        ),
    )
    strings = np.array([b"ko\xc4\x8dka", "cat"], dtype=object)
    assert prepared(sig, s=strings).feeds["s"].tolist() == ["kočka", "cat"]
    with pytest.raises(InvalidInput, match="input 's': element 1 is not valid UTF-8"):
        prepared(sig, s=np.array([b"a", b"\xff"], dtype=object))


def test_classify_and_class_rows_are_the_wrong_method() -> None:
    with pytest.raises(WrongMethod, match="cannot classify.*Use predict"):
        tensor.prepare(REG, Example(image=b"x"), LIMITS, ())
    with pytest.raises(WrongMethod, match="takes named tensors"):
        tensor.prepare_batch(REG, Batch(images=[b"x"]), LIMITS, ())


def regression_engine(tmp_path: Path) -> Engine:
    onnx.save(regression_model(W, BIAS), str(tmp_path / "model.onnx"))
    return load_engine("onnxruntime", tmp_path / "model.onnx", EngineOptions())


def test_the_warm_up_input_is_one_generated_request(tmp_path: Path) -> None:
    engine = regression_engine(tmp_path)
    (answer,) = tensor.OUTPUT.run(engine, tensor.warm_up(REG, ()))  # type: ignore[arg-type]
    assert answer["y"].shape == (1, 2)
    assert tensor.check(REG, engine.info, answer) is None  # type: ignore[attr-defined]
    wrong = replace(REG, fields=replace(REG_FIELDS, outputs=(TensorSpec("y", "FP32", (-1, 5)),)))
    problem = tensor.check(wrong, engine.info, answer)  # type: ignore[attr-defined]
    assert problem and "output 'y' has shape ['N', 2] but servable.json says [-1, 5]" in problem
    missing = replace(REG, fields=replace(REG_FIELDS, outputs=(TensorSpec("z", "FP32", (-1, 2)),)))
    assert "the model's outputs are ['y']" in (tensor.check(missing, engine.info, answer) or "")  # type: ignore[attr-defined]


def test_sample_inputs_fill_free_axes() -> None:
    feeds = tensor.sample_feeds(
        [X, TensorSpec("m", "BOOL", (-1, -1)), TensorSpec("s", "BYTES", ())], rows=2
    )
    assert feeds["x"].shape == (2, 3) and feeds["x"].dtype == np.float32
    assert feeds["m"].shape == (2, tensor.FREE_AXIS) and feeds["m"].dtype == np.bool_
    assert feeds["s"].shape == () and feeds["s"].dtype == object
