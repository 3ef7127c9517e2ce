"""An existing ONNX model → servable, and the checks every exporter shares (verify.py)."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from pyserving.errors import ExportError
from pyserving.export import Progress, export_onnx
from pyserving.export.verify import compare, unsupported_ops
from pyserving.kinds import load_signature
from pyserving.kinds.features import FeatureFields
from pyserving.kinds.image import ImageFields
from pyserving.signature import list_versions
from tests.onnx_models import linear_model, mean_colour_model

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def conv_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 4),
    ).eval()


def save_torch_onnx(net: torch.nn.Module, path: Path, size: tuple[int, int] | None) -> Path:
    """A float NCHW model as PyTorch users export them; `size` None: height and width free."""
    height, width = size or (24, 24)
    axes = {"input": {0: "batch"}, "out": {0: "batch"}}
    if size is None:
        axes["input"] |= {2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, height, width),),
            str(path),
            input_names=["input"],
            output_names=["out"],
            dynamic_axes=axes,
            dynamo=False,
        )
    return path


def torch_reference(net: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return net(x).numpy()  # type: ignore[no-any-return]


def served_scores(version: Path, inputs: np.ndarray) -> np.ndarray:
    sig = load_signature(version)
    session = ort.InferenceSession(str(version / "model.onnx"))
    (scores,) = session.run([sig.output_name], {sig.input_name: inputs})
    return np.asarray(scores)


def random_images(height: int, width: int, count: int = 3) -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def test_float_nchw_model_gets_a_uint8_nhwc_input(tmp_path: Path) -> None:
    net = conv_net()
    model = save_torch_onnx(net, tmp_path / "net.onnx", (24, 32))
    version = export_onnx(model, tmp_path, "net", labels="a,b,c,d", mean=MEAN, std=STD)
    sig = load_signature(version)
    assert (sig.input_name, sig.input_dtype, sig.fields) == ("image", "uint8", ImageFields(24, 32))
    assert (sig.output_name, sig.scores, sig.source["original_input"]) == ("out", "logits", "input")
    session = ort.InferenceSession(str(version / "model.onnx"))
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(uint8)", [24, 32, 3])
    images = random_images(24, 32)
    assert np.abs(served_scores(version, images) - torch_reference(net, images)).max() < 1e-4


def test_free_height_and_width_need_an_input_size(tmp_path: Path) -> None:
    net = conv_net()
    model = save_torch_onnx(net, tmp_path / "free.onnx", None)
    with pytest.raises(ExportError, match="give --input-size"):
        export_onnx(model, tmp_path, "free", labels="a,b,c,d")
    version = export_onnx(
        model, tmp_path, "free", labels="a,b,c,d", input_size=20, mean=MEAN, std=STD
    )
    images = random_images(20, 20)
    assert np.abs(served_scores(version, images) - torch_reference(net, images)).max() < 1e-4
    with pytest.raises(ExportError, match="the model's input height is 24"):
        export_onnx(
            save_torch_onnx(net, tmp_path / "fixed.onnx", (24, 24)),
            tmp_path,
            "x",
            labels="a,b,c,d",
            input_size=20,
        )


def test_uint8_model_is_kept_as_it_is(tmp_path: Path) -> None:
    onnx.save(mean_colour_model(3, 8), str(tmp_path / "colour.onnx"))
    version = export_onnx(tmp_path / "colour.onnx", tmp_path, "colour", labels="red,green,blue")
    red = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    red[..., 0] = 200
    assert served_scores(version, red).argmax() == 0
    with pytest.raises(ExportError, match="normalises them itself"):
        export_onnx(tmp_path / "colour.onnx", tmp_path, "colour", labels="r,g,b", mean=0.5)


def test_features_model_float_and_double(tmp_path: Path) -> None:
    weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    onnx.save(linear_model(weights), str(tmp_path / "linear.onnx"))
    version = export_onnx(
        tmp_path / "linear.onnx", tmp_path, "lin", labels="x,y,z", features="a,b,c,d"
    )
    sig = load_signature(version)
    assert (sig.kind, sig.fields, sig.input_dtype) == (
        "features",
        FeatureFields(("a", "b", "c", "d")),
        "float32",
    )
    rows = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    assert np.abs(served_scores(version, rows) - rows @ weights).max() < 1e-5

    double = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["scores"])],
            "double",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
            [helper.make_tensor_value_info("scores", TensorProto.DOUBLE, ["N", 3])],
            [numpy_helper.from_array(weights.astype(np.float64), "W")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    onnx.save(double, str(tmp_path / "double.onnx"))
    version = export_onnx(
        tmp_path / "double.onnx", tmp_path, "dbl", labels="x,y,z", features=["a", "b", "c", "d"]
    )
    assert load_signature(version).input_name == "features"
    assert np.abs(served_scores(version, rows) - rows @ weights).max() < 1e-5
    with pytest.raises(ExportError, match="takes 4 features but 3 were named"):
        export_onnx(tmp_path / "linear.onnx", tmp_path, "lin", labels="x,y,z", features="a,b,c")


def two_outputs_model() -> onnx.ModelProto:
    """skl2onnx's shape: an int64 `label` and a float `probabilities` output."""
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
        ],
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_the_float_output_is_chosen_and_probabilities_told(tmp_path: Path) -> None:
    onnx.save(two_outputs_model(), str(tmp_path / "two.onnx"))
    version = export_onnx(tmp_path / "two.onnx", tmp_path, "two", labels="x,y,z", features="a,b,c")
    sig = load_signature(version)
    assert (sig.output_name, sig.scores) == ("probabilities", "probabilities")
    with pytest.raises(ExportError, match="'label' is not a float tensor"):
        export_onnx(
            tmp_path / "two.onnx", tmp_path, "two", labels="x,y,z", features="a,b,c", output="label"
        )


def test_unsupported_ops_are_named(tmp_path: Path) -> None:
    """What tf2onnx writes for DecodeJpeg: a node of TensorFlow's op in the ONNX domain."""
    inner = helper.make_graph(
        [helper.make_node("DecodeJpeg", ["bytes"], ["pixels"])],
        "body",
        [helper.make_tensor_value_info("bytes", TensorProto.STRING, [])],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, None)],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["pixels"], then_branch=inner, else_branch=inner)],
        "outer",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(tmp_path / "jpeg.onnx"))
    assert unsupported_ops(tmp_path / "jpeg.onnx") == ["DecodeJpeg"]
    assert unsupported_ops(two_outputs_model().SerializeToString()) == []


def test_disagreement_with_the_source_is_refused(tmp_path: Path) -> None:
    onnx.save(linear_model(np.eye(3, dtype=np.float32)), str(tmp_path / "eye.onnx"))
    rows = np.ones((4, 3), dtype=np.float32)
    progress = Progress(2)
    agreement = compare(
        tmp_path / "eye.onnx", "features", "logits", rows, lambda x: x, "f", progress
    )
    assert (agreement.max_abs_difference, agreement.classes) == (0.0, 3)
    with pytest.raises(ExportError, match=r"ONNX and f disagree: max abs difference 1.00e-02"):
        compare(
            tmp_path / "eye.onnx", "features", "logits", rows, lambda x: x + 0.01, "f", progress
        )
    with pytest.raises(ExportError, match=r"has shape \(4, 3\) but f gives \(4, 2\)"):
        compare(
            tmp_path / "eye.onnx", "features", "logits", rows, lambda x: x[:, :2], "f", progress
        )


def test_cli_wraps_a_model_as_it_is(tmp_path: Path) -> None:
    net = conv_net()
    save_torch_onnx(net, tmp_path / "net.onnx", (24, 24))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyserving",
            "export",
            "onnx",
            str(tmp_path / "net.onnx"),
            "--labels",
            "a,b,c,d",
            "--input-size",
            "24",
            "--mean",
            *map(str, MEAN),
            "--std",
            *map(str, STD),
            "--repository",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "max abs difference" in result.stderr
    version = Path(result.stdout.strip())
    assert version.parent == tmp_path / "models" / "net"
    images = random_images(24, 24)
    assert np.abs(served_scores(version, images) - torch_reference(net, images)).max() < 1e-4
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyserving",
            "export",
            "onnx",
            str(tmp_path / "net.onnx"),
            "--labels",
            "a,b",
            "--repository",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith("error: the model has 4 classes but 2 labels were given")
    assert list_versions(tmp_path / "models" / "net") == [int(version.name)]
