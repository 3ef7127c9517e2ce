"""PyTorch → servable: the general exporter, checkpoints, and `pyserving export torch`."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from pyserving.errors import ExportError
from pyserving.export import export_torch
from pyserving.export.torch import load_checkpoint, load_factory
from pyserving.kinds import load_signature
from pyserving.kinds.image import ImageFields
from pyserving.signature import list_versions
from tests.processes import run_cli

FACTORY_SOURCE = """
import torch

def build_model(classes=4, softmax=False):
    layers = [
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, classes),
    ]
    if softmax:
        layers.append(torch.nn.Softmax(dim=1))
    return torch.nn.Sequential(*layers)

def build_probabilities():
    return build_model(softmax=True)

not_a_model = 42
"""
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def factory_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `tinynet.py`, a module with model factories, as a user would have."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "tinynet.py").write_text(FACTORY_SOURCE)
    return folder


def tiny_model(seed: int, classes: int = 4, softmax: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, classes),
    ]
    if softmax:
        layers.append(torch.nn.Softmax(dim=1))
    model = torch.nn.Sequential(*layers)
    # Non-trivial running statistics, so eval() mode matters.
    state = model.state_dict()
    state["1.running_mean"] = torch.rand(8) - 0.5
    state["1.running_var"] = torch.rand(8) * 1.5 + 0.5
    model.load_state_dict(state)
    return model.eval()


def torch_reference(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """The model's own preprocessing, written out independently of the exporter's wrapper."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).numpy()  # type: ignore[no-any-return]


def onnx_scores(version: Path, images: np.ndarray) -> np.ndarray:
    sig = load_signature(version)
    session = ort.InferenceSession(str(version / "model.onnx"))
    (scores,) = session.run([sig.output_name], {sig.input_name: images})
    return np.asarray(scores)


def random_images(height: int, width: int, count: int = 3) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def test_any_module_exports_and_matches_pytorch(tmp_path: Path) -> None:
    model = tiny_model(0)
    version = export_torch(
        model, tmp_path, "tiny", labels=["a", "b", "c", "d"], input_size=32, mean=MEAN, std=STD
    )
    images = random_images(32, 32)
    ours, theirs = onnx_scores(version, images), torch_reference(model, images)
    assert ours.shape == (3, 4)
    assert np.abs(ours - theirs).max() < 1e-4
    sig = load_signature(version)
    assert (sig.kind, sig.input_name, sig.input_dtype) == ("image", "image", "uint8")
    assert (sig.fields, sig.labels) == (ImageFields(32, 32), ("a", "b", "c", "d"))
    assert sig.scores == "logits"
    assert sig.source["framework"] == "pytorch"
    assert 0 <= sig.source["max_abs_difference"] < 1e-3


def test_rectangular_input_and_probabilities_are_told_apart(tmp_path: Path) -> None:
    model = tiny_model(1, softmax=True)
    version = export_torch(
        model, tmp_path, "soft", labels="a,b,c,d", input_size=(24, 40), mean=MEAN, std=STD
    )
    sig = load_signature(version)
    assert (sig.fields, sig.scores) == (ImageFields(24, 40), "probabilities")
    images = random_images(24, 40)
    assert np.abs(onnx_scores(version, images) - torch_reference(model, images)).max() < 1e-5


class BranchyNet(torch.nn.Module):
    """Data-dependent control flow: tracing bakes in the branch the example input takes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        if bool(pooled.sum() < -2.9):  # only the exporter's all-black example goes here
            pooled = pooled * 0
        return self.linear(pooled)  # type: ignore[no-any-return]


def test_export_that_disagrees_with_pytorch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="ONNX and PyTorch disagree: max abs difference"):
        export_torch(
            BranchyNet(), tmp_path, "branchy", labels="a,b", input_size=8, mean=0.5, std=0.5
        )
    assert list((tmp_path / "branchy").iterdir()) == []


def test_background_class_for_1001_class_models(tmp_path: Path) -> None:
    model = tiny_model(2, classes=4)
    with pytest.raises(ExportError, match="4 classes but 3 labels.*--background"):
        export_torch(model, tmp_path, "bg", labels="x,y,z", input_size=16)
    assert list_versions(tmp_path / "bg") == []
    assert list((tmp_path / "bg").iterdir()) == []  # no temporary folder left behind
    version = export_torch(model, tmp_path, "bg", labels="x,y,z", input_size=16, background=True)
    assert load_signature(version).labels == ("background", "x", "y", "z")


def test_labels_from_a_file(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\none\ntwo\nthree\n")
    version = export_torch(tiny_model(3), tmp_path / "models", "m", labels=labels, input_size=16)
    assert load_signature(version).labels == ("zero", "one", "two", "three")


@pytest.mark.parametrize("layout", ["state dict", "state_dict key", "model key", "DataParallel"])
def test_checkpoint_layouts_load(tmp_path: Path, layout: str) -> None:
    trained = tiny_model(10)
    state = trained.state_dict()
    saved = {
        "state dict": state,
        "state_dict key": {"state_dict": state, "epoch": 3},
        "model key": {"model": state, "optimizer": {}},
        "DataParallel": {f"module.{k}": v for k, v in state.items()},
    }[layout]
    torch.save(saved, tmp_path / "weights.pth")
    fresh = tiny_model(11)
    load_checkpoint(fresh, tmp_path / "weights.pth")
    images = random_images(16, 16)
    assert np.array_equal(torch_reference(fresh, images), torch_reference(trained, images))


def test_checkpoint_key_mismatch_names_the_keys(tmp_path: Path) -> None:
    state = tiny_model(0, classes=5).state_dict()
    del state["1.running_mean"]
    state["head.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(ExportError) as info:
        load_checkpoint(tiny_model(0, classes=4), tmp_path / "other.pth")
    message = str(info.value)
    assert "1 missing key: 1.running_mean" in message
    assert "1 unexpected key: head.weight" in message
    assert "2 shape mismatches: 5.weight (checkpoint [5, 8], model [4, 8])" in message


def test_checkpoint_that_is_not_a_state_dict(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "note": "no weights here"}, tmp_path / "meta.pth")
    with pytest.raises(ExportError, match="expected a state dict"):
        load_checkpoint(tiny_model(0), tmp_path / "meta.pth")
    torch.save(tiny_model(0), tmp_path / "pickled.pth")  # a whole pickled module
    with pytest.raises(ExportError, match=r"torch.save\(model.state_dict\(\), path\)"):
        load_checkpoint(tiny_model(0), tmp_path / "pickled.pth")
    with pytest.raises(ExportError, match="no such file"):
        load_checkpoint(tiny_model(0), tmp_path / "missing.pth")


def test_factory_is_imported_from_the_current_folder(
    factory_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(factory_dir)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(factory_dir))])
    assert isinstance(load_factory("tinynet:build_model"), torch.nn.Module)
    with pytest.raises(ExportError, match="package.module:function"):
        load_factory("tinynet.build_model")
    with pytest.raises(ExportError, match="has no 'build_modle'"):
        load_factory("tinynet:build_modle")
    with pytest.raises(ExportError, match="not a function or class"):
        load_factory("tinynet:not_a_model")
    with pytest.raises(ExportError, match="cannot import 'nosuchmodule'"):
        load_factory("nosuchmodule:build")


def export(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("export", *args, timeout=300, cwd=cwd)


def test_cli_exports_a_factory_with_a_checkpoint(factory_dir: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(factory_dir))
    try:
        import tinynet  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(factory_dir))
    torch.manual_seed(5)
    trained = tinynet.build_model().eval()
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "weights.pth")
    (tmp_path / "labels.txt").write_text("w\nx\ny\nz\n")
    result = export(
        "torch",
        "--factory",
        "tinynet:build_model",
        "--checkpoint",
        str(tmp_path / "weights.pth"),
        "--input-size",
        "20x28",
        "--labels",
        str(tmp_path / "labels.txt"),
        "--mean",
        *map(str, MEAN),
        "--std",
        *map(str, STD),
        "--repository",
        str(tmp_path / "models"),
        cwd=factory_dir,
    )
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [s.split("]")[0] for s in steps] == [f"[{i}/6" for i in range(1, 7)]
    assert "max abs difference" in result.stderr
    version = Path(result.stdout.strip())
    assert version.parent == tmp_path / "models" / "weights"  # named after the checkpoint
    images = random_images(20, 28)
    assert np.abs(onnx_scores(version, images) - torch_reference(trained, images)).max() < 1e-4
    assert load_signature(version).source["checkpoint"] == str(tmp_path / "weights.pth")


def test_cli_reports_a_mismatched_checkpoint_in_one_line(factory_dir: Path, tmp_path: Path) -> None:
    torch.save(tiny_model(0, classes=7).state_dict(), tmp_path / "wrong.pth")
    result = export(
        "torch",
        "--factory",
        "tinynet:build_model",
        "--checkpoint",
        str(tmp_path / "wrong.pth"),
        "--input-size",
        "16",
        "--labels",
        "a,b,c,d",
        "--repository",
        str(tmp_path / "models"),
        cwd=factory_dir,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "shape mismatch" in errors[0] and "5.weight" in errors[0]
    assert "Traceback" not in result.stderr
    assert list_versions(tmp_path / "models" / "wrong") == []


def test_missing_torch_names_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        from pyserving.cli.main import main
        sys.exit(main(["export", "torch", "--factory", "m:f", "--input-size", "8",
                       "--labels", "a,b"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2  # a missing extra
    assert result.stderr.strip() == (
        "error: torch is not installed; install it with: pip install 'pyserving[torch]'"
    )
