"""`pyserving export onnx --kind tensor`: any ONNX model, described from its graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pyserving.cli.main import main
from pyserving.errors import ExportError
from pyserving.export.onnx_tensor import export_onnx_tensor
from pyserving.kinds import load_signature
from pyserving.kinds.base import fields_of
from pyserving.kinds.tensor import TensorFields
from pyserving.reference import load_tensor_reference
from pyserving.signature import list_versions
from tests.onnx_models import regression_model, sum_product_model

RNG = np.random.default_rng(14)
W = RNG.normal(size=(3, 2)).astype(np.float32)
BIAS = RNG.normal(size=2).astype(np.float32)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def only_version(repository: Path, name: str) -> Path:
    (version,) = list_versions(repository / name)
    return repository / name / str(version)


def test_a_regression_is_described_from_its_graph(tmp_path: Path) -> None:
    model = save(regression_model(W, BIAS), tmp_path / "reg.onnx")
    code = main(
        ["export", "onnx", str(model), "--kind", "tensor", "--repository", str(tmp_path / "m")]
    )
    assert code == 0
    version = only_version(tmp_path / "m", "reg")
    doc = json.loads((version / "servable.json").read_text())
    assert doc["kind"] == "tensor" and doc["input"]["batch_axis"] is True
    assert doc["input"]["tensors"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert doc["output"]["tensors"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    assert (version / "labels.txt").read_text() == ""
    assert (version / "model.onnx").read_bytes() == model.read_bytes()
    reference = load_tensor_reference(version)
    assert reference is not None
    x = reference.inputs["x"]
    assert x.shape == (3, 3)
    np.testing.assert_allclose(reference.outputs["y"], x @ W + BIAS, rtol=1e-5, atol=1e-6)


def test_several_inputs_and_outputs(tmp_path: Path) -> None:
    version = export_onnx_tensor(
        save(sum_product_model(), tmp_path / "sp.onnx"), tmp_path, "sp", allow_nan=True
    )
    sig = load_signature(version)
    tensors = fields_of(sig, TensorFields)
    assert [t.name for t in tensors.inputs] == ["a", "b"] and sig.input_dtype == "int64"
    assert [(t.name, t.datatype) for t in tensors.outputs] == [
        ("sum", "INT64"),
        ("product", "INT64"),
    ]
    assert tensors.batch_axis and tensors.allow_nan
    reference = load_tensor_reference(version)
    assert reference is not None
    a, b = reference.inputs["a"], reference.inputs["b"]
    assert reference.outputs["product"].tolist() == (a * b).tolist()


def centring_model() -> onnx.ModelProto:
    """x [N, 3] → x minus the mean of the batch: its rows depend on each other."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["x", "mean"], ["centred"]),
        ],
        "centring",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("centred", TensorProto.FLOAT, ["N", 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_rows_that_depend_on_each_other_are_not_batched(tmp_path: Path) -> None:
    version = export_onnx_tensor(save(centring_model(), tmp_path / "c.onnx"), tmp_path, "c")
    assert not fields_of(load_signature(version), TensorFields).batch_axis


def test_a_fixed_batch_size_runs_alone(tmp_path: Path) -> None:
    model = regression_model(W, BIAS)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    version = export_onnx_tensor(save(model, tmp_path / "one.onnx"), tmp_path, "one")
    tensors = fields_of(load_signature(version), TensorFields)
    assert not tensors.batch_axis and tensors.inputs[0].shape == (1, 3)


def test_outputs_that_are_not_tensors_are_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["seq"])],
        "sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ExportError, match="output 'seq' is seq\\(tensor\\(float\\)\\)"):
        export_onnx_tensor(save(model, tmp_path / "s.onnx"), tmp_path, "s")
    assert not (tmp_path / "s").exists() or not list_versions(tmp_path / "s")


def test_the_cli_says_which_options_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(save(regression_model(W, BIAS), tmp_path / "reg.onnx"))
    repo = ["--repository", str(tmp_path / "m")]
    assert main(["export", "onnx", model, "--kind", "tensor", "--labels", "a,b", *repo]) == 1
    assert "--labels applies to classifiers" in capsys.readouterr().err
    assert main(["export", "onnx", model, "--allow-nan", "--labels", "a,b", *repo]) == 1
    assert "--allow-nan applies to --kind tensor" in capsys.readouterr().err
    assert main(["export", "onnx", model, *repo]) == 1
    assert "a classifier needs --labels" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
