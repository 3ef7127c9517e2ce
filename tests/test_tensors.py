"""Named tensors: JSON values as arrays of a datatype, and batches of requests grouped,
run and split back, with real ONNX Runtime engines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from pyserving import tensors
from pyserving.engines import EngineOptions, load_engine
from pyserving.errors import InvalidInput
from tests.onnx_models import sum_product_model
from tests.test_kinds_tensor import (
    BIAS,
    REG,
    REG_FIELDS,
    SUM_PRODUCT,
    W,
    prepared,
    regression_engine,
)


def test_json_values_become_the_datatype_or_say_what_was_found() -> None:
    assert tensors.array_of([[1, 2]], "FP32", "w").dtype == np.float32
    assert tensors.array_of([True, False], "BOOL", "w").tolist() == [True, False]
    assert tensors.array_of([["a", "b"]], "BYTES", "w").tolist() == [[b"a", b"b"]]
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
            tensors.array_of(values, datatype, "w")


def test_requests_of_one_shape_run_in_one_call_and_their_rows_come_back(tmp_path: Path) -> None:
    engine = regression_engine(tmp_path)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (1, 3, 2)]
    items = [prepared(REG, x=x) for x in xs]
    groups = tensors.stack(items)
    assert len(groups) == 1 and groups[0].feeds["x"].shape == (6, 3)
    answers = tensors.run(engine, groups)  # type: ignore[arg-type]
    for x, answer in zip(xs, answers, strict=True):
        np.testing.assert_allclose(answer["y"], x @ W + BIAS, rtol=1e-6)


def test_without_a_batch_axis_each_request_runs_alone(tmp_path: Path) -> None:
    engine = regression_engine(tmp_path)
    alone = replace(REG, fields=replace(REG_FIELDS, batch_axis=False))
    items = [prepared(alone, x=np.ones((n, 3), np.float32)) for n in (1, 2)]
    groups = tensors.stack(items)
    assert [g.indices for g in groups] == [(0,), (1,)]
    answers = tensors.run(engine, groups)  # type: ignore[arg-type]
    assert [a["y"].shape for a in answers] == [(1, 2), (2, 2)]


def test_a_request_the_model_cannot_run_fails_alone(tmp_path: Path) -> None:
    onnx.save(sum_product_model(), str(tmp_path / "model.onnx"))
    engine = load_engine("onnxruntime", tmp_path / "model.onnx", EngineOptions())
    # Rows that pass the checks, but whose `b` ORT cannot add: a group of three must not
    # fail the two good requests with it.
    good = prepared(SUM_PRODUCT, a=np.array([1, 2]), b=np.array([3, 4]))
    bad = tensors.Prepared({"a": np.array([1, 2]), "b": np.array([1, 2, 3])}, good.key, 2)
    answers = tensors.run(engine, tensors.stack([good, bad, good]))  # type: ignore[arg-type]
    assert answers[0]["sum"].tolist() == [4, 6] and answers[2]["product"].tolist() == [3, 8]
    assert isinstance(answers[1], InvalidInput)
    assert "the model cannot run on these inputs" in str(answers[1])


def test_json_objects_and_nulls_are_not_numbers() -> None:
    with pytest.raises(InvalidInput, match=r"FP32 data must be numbers, got \{'a': 1\}"):
        tensors.array_of([{"a": 1}], "FP32", "w")
    with pytest.raises(InvalidInput, match="INT64 data must be integers, got None"):
        tensors.array_of([None, 1], "INT64", "w")
