"""`pyserving predict`'s reading of --input: values shaped and typed as the model takes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyserving.cli.predict import _input_tensor, _nested
from pyserving.errors import ConfigError
from pyserving.results import Tensor, TensorSpec

X = TensorSpec("x", "FP32", (-1, 3))
IDS = TensorSpec("ids", "INT64", (-1, -1))
FLAG = TensorSpec("flag", "BOOL", ())
TAKES = "x, ids, flag"


def test_values_take_the_models_shape_and_datatype() -> None:
    assert _input_tensor("x=1,2,3,4,5,6", [X], TAKES) == Tensor(
        "x", "FP32", (2, 3), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    )
    assert _input_tensor("1, 2, 3", [X], TAKES).shape == (1, 3)  # one input: no name needed
    assert _input_tensor("ids=7,8", [X, IDS], TAKES) == Tensor("ids", "INT64", (1, 2), (7, 8))
    assert _input_tensor("flag=true", [FLAG], TAKES) == Tensor("flag", "BOOL", (), (True,))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x=1,2", r"takes shape \[-1, 3\]: 2 values do not fit it"),
        ("x=1,a,3", "input 'x' is FP32: 'a' is not one"),
        ("ids=1.5", "input 'ids' is INT64: '1.5' is not one"),
        ("y=1", "the model has no input 'y'"),
        ("1,2,3", "say which input"),
    ],
)
def test_bad_values_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        _input_tensor(text, [X, IDS], TAKES)


def test_npy_files_keep_their_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
    tensor = _input_tensor(f"x={tmp_path / 'x.npy'}", [X], TAKES)
    assert (tensor.shape, tensor.values) == ((2, 3), (0.0, 1.0, 2.0, 3.0, 4.0, 5.0))
    np.save(tmp_path / "f.npy", np.ones(3, dtype=np.float64))
    with pytest.raises(ConfigError, match="holds float64; input 'ids' takes INT64"):
        _input_tensor(f"ids={tmp_path / 'f.npy'}", [IDS], TAKES)


def test_answers_print_nested_by_shape() -> None:
    assert _nested([1, 2, 3, 4, 5, 6], (2, 3)) == [[1, 2, 3], [4, 5, 6]]
    assert _nested([7], ()) == 7
