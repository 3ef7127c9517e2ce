import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pyserving.errors import ServableError
from pyserving.servable import load_servable
from pyserving.settings import ModelConfig, Settings
from tests.onnx_models import write_features_servable, write_image_servable

SETTINGS = Settings(models=(ModelConfig("m", Path("unused")),))


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def test_image_servable_runs_its_model(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    folder = write_image_servable(tmp_path / "1")
    servable = load_servable("colours", 1, folder, SETTINGS, executor)
    batch = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    batch[0, ..., 2] = 255  # blue
    batch[1, ..., 1] = 255  # green
    scores = servable.run(batch)
    assert scores.shape == (2, 3)
    assert scores.argmax(axis=1).tolist() == [2, 1]
    assert (servable.name, servable.version, servable.signature.labels[2]) == ("colours", 1, "blue")


async def test_servable_batches_through_its_batcher(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    folder = write_features_servable(tmp_path / "3", np.eye(2, 4), ["x", "y"])
    servable = load_servable("lin", 3, folder, SETTINGS, executor)
    row = await servable.batcher.submit(np.array([0.0, 5.0], dtype=np.float32))
    assert row.tolist() == [0.0, 5.0, 0.0, 0.0]


def test_label_count_must_match_the_model_output(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    folder = write_image_servable(tmp_path / "1")
    doc = json.loads((folder / "servable.json").read_text())
    doc["output"]["classes"] = 4
    (folder / "servable.json").write_text(json.dumps(doc))
    (folder / "labels.txt").write_text("a\nb\nc\nd\n")
    with pytest.raises(ServableError, match="has 3 classes but labels.txt has 4 labels"):
        load_servable("m", 1, folder, SETTINGS, executor)


def test_corrupt_model_is_reported(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    folder = write_image_servable(tmp_path / "1")
    (folder / "model.onnx").write_bytes(b"this is not a protobuf")
    with pytest.raises(ServableError, match=r"model\.onnx: ONNX Runtime cannot load it"):
        load_servable("m", 1, folder, SETTINGS, executor)


def test_signature_must_name_real_tensors(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    folder = write_image_servable(tmp_path / "1")
    doc = json.loads((folder / "servable.json").read_text())
    doc["input"]["name"] = "pixels"
    (folder / "servable.json").write_text(json.dumps(doc))
    with pytest.raises(ServableError, match="has no input 'pixels'.*inputs are \\['image'\\]"):
        load_servable("m", 1, folder, SETTINGS, executor)


def test_missing_model_file(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    folder = write_image_servable(tmp_path / "1")
    (folder / "model.onnx").unlink()
    with pytest.raises(ServableError, match=r"model\.onnx: missing"):
        load_servable("m", 1, folder, SETTINGS, executor)


def test_cuda_provider_is_selectable_and_refused_clearly_without_a_gpu(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    import onnxruntime

    folder = write_image_servable(tmp_path / "1")
    settings = Settings(models=SETTINGS.models, execution_provider="cuda")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        session = load_servable("m", 1, folder, settings, executor).session
        assert session is not None
        assert session.get_providers()[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(ServableError, match="CUDAExecutionProvider is not available"):
            load_servable("m", 1, folder, settings, executor)
