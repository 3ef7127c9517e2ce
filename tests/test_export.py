import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from pyserving.errors import ExportError
from pyserving.export import write_servable
from pyserving.export.zoo import efficientnet_lite0
from pyserving.kinds import load_signature
from pyserving.kinds.image import ImageFields
from pyserving.signature import list_versions
from tests.onnx_models import write_image_servable


@pytest.fixture(scope="module")
def version_dir(imagenet_repository: Path) -> Path:
    versions = list_versions(imagenet_repository / "imagenet")
    assert len(versions) == 1
    return imagenet_repository / "imagenet" / str(versions[0])


def test_export_writes_a_complete_version(version_dir: Path) -> None:
    assert abs(int(version_dir.name) - time.time()) < 3600
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "labels.txt",
        "model.onnx",
        "reference.npz",
        "servable.json",
    ]
    assert [p.name for p in version_dir.parent.iterdir()] == [version_dir.name]  # no temp left
    assert version_dir.stat().st_mode & 0o005 == 0o005  # readable by a server of another user
    sig = load_signature(version_dir)
    assert (sig.kind, sig.fields, sig.input_dtype) == ("image", ImageFields(224, 224), "uint8")
    assert sig.labels[285] == "Egyptian cat" and sig.labels[967] == "espresso"
    assert sig.source["framework"] == "pytorch"
    assert sig.source["max_abs_difference"] < 1e-3


def test_graph_takes_uint8_nhwc_images(version_dir: Path) -> None:
    session = ort.InferenceSession(str(version_dir / "model.onnx"))
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(uint8)", [224, 224, 3])
    assert session.get_outputs()[0].shape[1:] == [1000]


def test_onnx_agrees_with_pytorch_on_the_same_preprocessed_tensor(version_dir: Path) -> None:
    rng = np.random.default_rng(42)
    images = rng.integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(version_dir / "model.onnx"))
    (onnx_logits,) = session.run(None, {"image": images})
    # The model's own preprocessing, written out independently of the exporter's wrapper.
    tensor = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    with torch.no_grad():
        torch_logits = efficientnet_lite0()(tensor).numpy()
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3


def test_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    def write(folder: Path) -> None:
        write_image_servable(folder)
        raise ExportError("verification failed")

    with pytest.raises(ExportError):
        write_servable(tmp_path, "broken", write)
    assert list((tmp_path / "broken").iterdir()) == []


def test_invalid_output_is_never_renamed_into_place(tmp_path: Path) -> None:
    def write(folder: Path) -> None:
        write_image_servable(folder)
        (folder / "labels.txt").write_text("only one label\n")

    with pytest.raises(Exception, match="labels"):
        write_servable(tmp_path, "m", write)
    assert list_versions(tmp_path / "m") == []


def test_each_export_is_a_newer_version(tmp_path: Path) -> None:
    def write(folder: Path) -> None:
        write_image_servable(folder)

    first = write_servable(tmp_path, "m", write)
    second = write_servable(tmp_path, "m", write)
    assert int(second.name) == int(first.name) + 1 or int(second.name) > int(first.name)
    assert list_versions(tmp_path / "m") == [int(first.name), int(second.name)]


@pytest.mark.slow  # a whole export in a process of its own
def test_cli_export_shows_progress(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyserving",
            "export",
            "efficientnet-lite0",
            "--repository",
            str(tmp_path),
            "--name",
            "net",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    steps = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [s.split("]")[0] for s in steps] == [f"[{i}/5" for i in range(1, 6)]
    assert "max abs difference" in result.stderr
    assert Path(result.stdout.strip()).parent == tmp_path / "net"
    assert len(list_versions(tmp_path / "net")) == 1
