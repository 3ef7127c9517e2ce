"""The tensor kind: its servable.json sections, checks of named inputs, batches, refusals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from pyserving.engines import EngineOptions, load_engine
from pyserving.errors import InvalidInput, ServableError, WrongMethod
from pyserving.kinds import Batch, Limits, kind_module, tensor
from pyserving.results import Example, TensorSpec
from pyserving.signature import Signature
from tests.onnx_models import regression_model, sum_product_model

X = TensorSpec("x", "FP32", (-1, 3))
Y = TensorSpec("y", "FP32", (-1, 2))
REG = Signature(
    kind="tensor",
    input_name="x",
    input_dtype="float32",
    output_name="y",
    inputs=(X,),
    outputs=(Y,),
    batch_axis=True,
)
A, B = TensorSpec("a", "INT64", (-1,)), TensorSpec("b", "INT64", (-1,))
SUM_PRODUCT = Signature(
    kind="tensor",
    input_name="a",
    input_dtype="int64",
    output_name="sum",
    inputs=(A, B),
    outputs=(TensorSpec("sum", "INT64", (-1,)), TensorSpec("product", "INT64", (-1,))),
    batch_axis=True,
)
LIMITS = Limits(max_tensor_bytes=1024)
W = np.arange(6, dtype=np.float32).reshape(3, 2) / 4
BIAS = np.array([0.5, -1.0], dtype=np.float32)


def fail(problem: str) -> ServableError:
    return ServableError(problem)


def prepared(sig: Signature, **tensors: np.ndarray) -> tensor.Prepared:
    (prepare,) = tensor.prepare_batch(sig, Batch(tensors=tensors), LIMITS, ())
    result = prepare()
    assert isinstance(result, tensor.Prepared)
    return result


def test_the_sections_round_trip() -> None:
    section = {"name": "x", "dtype": "float32", **tensor.section(REG)}
    assert section["tensors"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert tensor.parse(section, fail) == {"inputs": (X,), "batch_axis": True, "allow_nan": False}
    doc = tensor.output_section(REG)
    assert doc == {
        "output": {"name": "y", "tensors": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}
    }
    assert tensor.parse_output(doc, [], fail) == {"output_name": "y", "outputs": (Y,)}
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
        tensor.parse(section, fail)


def test_a_tensor_model_has_no_labels() -> None:
    with pytest.raises(
        ServableError, match="labels.txt has 2 labels; a tensor model has no classes"
    ):
        tensor.parse_output(tensor.output_section(REG), ["a", "b"], fail)
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
    for tensors, problem in cases:
        with pytest.raises(InvalidInput, match=problem):
            tensor.prepare_batch(REG, Batch(tensors=tensors), LIMITS, ())
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
    allowing = replace(REG, allow_nan=True)
    assert np.isnan(prepared(allowing, x=x).feeds["x"][0, 1])


def test_bytes_become_strings_and_must_be_utf8() -> None:
    sig = Signature(
        kind="tensor",
        input_name="s",
        input_dtype="string",
        output_name="n",
        inputs=(TensorSpec("s", "BYTES", (-1,)),),
        outputs=(TensorSpec("n", "INT64", (-1,)),),
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


def test_json_values_become_the_datatype_or_say_what_was_found() -> None:
    assert tensor.array_of([[1, 2]], "FP32", "w").dtype == np.float32
    assert tensor.array_of([True, False], "BOOL", "w").tolist() == [True, False]
    assert tensor.array_of([["a", "b"]], "BYTES", "w").tolist() == [[b"a", b"b"]]
    for values, datatype, problem in [
        ([1.5], "INT64", "INT64 data must be integers, got 1.5"),
        ([-1], "UINT8", "-1 is out of the range of UINT8"),
        (["x"], "FP32", "FP32 data must be numbers"),
        ([1, 0], "BOOL", "BOOL data must be true or false"),
        ([[1], [2, 3]], "FP32", "ragged"),
        ([["a"], ["b", "c"]], "BYTES", "every row needs the same length"),
        ([1], "BYTES", "BYTES element 0 is int"),
    ]:
        with pytest.raises(InvalidInput, match=problem):
            tensor.array_of(values, datatype, "w")


def regression_engine(tmp_path: Path) -> object:
    onnx.save(regression_model(W, BIAS), str(tmp_path / "model.onnx"))
    return load_engine("onnxruntime", tmp_path / "model.onnx", EngineOptions())


def test_requests_of_one_shape_run_in_one_call_and_their_rows_come_back(tmp_path: Path) -> None:
    engine = regression_engine(tmp_path)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (1, 3, 2)]
    items = [prepared(REG, x=x) for x in xs]
    groups = tensor.stack(items)
    assert len(groups) == 1 and groups[0].feeds["x"].shape == (6, 3)
    answers = tensor.run(engine, groups)  # type: ignore[arg-type]
    for x, answer in zip(xs, answers, strict=True):
        np.testing.assert_allclose(answer["y"], x @ W + BIAS, rtol=1e-6)


def test_without_a_batch_axis_each_request_runs_alone(tmp_path: Path) -> None:
    engine = regression_engine(tmp_path)
    alone = replace(REG, batch_axis=False)
    items = [prepared(alone, x=np.ones((n, 3), np.float32)) for n in (1, 2)]
    groups = tensor.stack(items)
    assert [g.indices for g in groups] == [(0,), (1,)]
    answers = tensor.run(engine, groups)  # type: ignore[arg-type]
    assert [a["y"].shape for a in answers] == [(1, 2), (2, 2)]


def test_a_request_the_model_cannot_run_fails_alone(tmp_path: Path) -> None:
    onnx.save(sum_product_model(), str(tmp_path / "model.onnx"))
    engine = load_engine("onnxruntime", tmp_path / "model.onnx", EngineOptions())
    # Rows that pass the checks, but whose `b` ORT cannot add: a group of three must not
    # fail the two good requests with it.
    good = prepared(SUM_PRODUCT, a=np.array([1, 2]), b=np.array([3, 4]))
    bad = tensor.Prepared({"a": np.array([1, 2]), "b": np.array([1, 2, 3])}, good.key, 2)
    answers = tensor.run(engine, tensor.stack([good, bad, good]))  # type: ignore[arg-type]
    assert answers[0]["sum"].tolist() == [4, 6] and answers[2]["product"].tolist() == [3, 8]
    assert isinstance(answers[1], InvalidInput)
    assert "the model cannot run on these inputs" in str(answers[1])


def test_the_warm_up_input_is_one_generated_request(tmp_path: Path) -> None:
    engine = regression_engine(tmp_path)
    (answer,) = tensor.run(engine, tensor.warm_up(REG, ()))  # type: ignore[arg-type]
    assert answer["y"].shape == (1, 2)
    assert tensor.check(REG, engine.info, answer) is None  # type: ignore[attr-defined]
    wrong = replace(REG, outputs=(TensorSpec("y", "FP32", (-1, 5)),))
    problem = tensor.check(wrong, engine.info, answer)  # type: ignore[attr-defined]
    assert problem and "output 'y' has shape ['N', 2] but servable.json says [-1, 5]" in problem
    missing = replace(REG, outputs=(TensorSpec("z", "FP32", (-1, 2)),))
    assert "the model's outputs are ['y']" in (tensor.check(missing, engine.info, answer) or "")  # type: ignore[attr-defined]


def test_sample_inputs_fill_free_axes() -> None:
    feeds = tensor.sample_feeds(
        [X, TensorSpec("m", "BOOL", (-1, -1)), TensorSpec("s", "BYTES", ())], rows=2
    )
    assert feeds["x"].shape == (2, 3) and feeds["x"].dtype == np.float32
    assert feeds["m"].shape == (2, tensor.FREE_AXIS) and feeds["m"].dtype == np.bool_
    assert feeds["s"].shape == () and feeds["s"].dtype == object


def test_json_objects_and_nulls_are_not_numbers() -> None:
    with pytest.raises(InvalidInput, match=r"FP32 data must be numbers, got \{'a': 1\}"):
        tensor.array_of([{"a": 1}], "FP32", "w")
    with pytest.raises(InvalidInput, match="INT64 data must be integers, got None"):
        tensor.array_of([None, 1], "INT64", "w")
