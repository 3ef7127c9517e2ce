import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pyserving.core.servable import load_servable
from pyserving.core.settings import ModelConfig, Settings
from pyserving.errors import ServableError
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
        servable = load_servable("m", 1, folder, settings, executor)
        assert (servable.engine_info.name, servable.engine_info.device) == ("onnxruntime", "cuda")
    else:
        with pytest.raises(ServableError, match="CUDAExecutionProvider is not available"):
            load_servable("m", 1, folder, settings, executor)


def test_session_options_follow_the_settings() -> None:
    import onnxruntime as ort

    from pyserving.core.servable import engine_options
    from pyserving.engines.onnxruntime import session_options

    options = session_options(engine_options(SETTINGS))
    assert options.intra_op_num_threads >= 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.enable_cpu_mem_arena
    assert options.inter_op_num_threads == 1
    lean = Settings(
        models=SETTINGS.models,
        intra_op_threads=1,
        graph_optimization_level="basic",
        cpu_memory_arena=False,
    )
    options = session_options(engine_options(lean))
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert not options.enable_cpu_mem_arena
    assert options.intra_op_num_threads == 1


def test_serve_flags_reach_the_settings(tmp_path: Path) -> None:
    from pyserving.cli.main import build_parser
    from pyserving.cli.serve import serve_settings
    from pyserving.core.servable import engine_options
    from pyserving.core.settings import BatchingSettings
    from pyserving.cores import usable_cores
    from pyserving.errors import ConfigError

    def settings(*flags: str) -> Settings:
        args = build_parser().parse_args(["serve", "--model_base_path", str(tmp_path), *flags])
        return serve_settings(args)

    chosen = settings(
        "--max_batch_size=4",
        "--batch_timeout_micros=250",
        "--max_enqueued_batches=2",
        "--num_batch_threads=2",
        "--graph_optimization_level=extended",
        "--disable_cpu_mem_arena",
    )
    assert chosen.batching == BatchingSettings(4, 250, 2, 2)
    assert chosen.graph_optimization_level == "extended"
    assert not chosen.cpu_memory_arena
    defaults = settings()
    assert defaults.batching == BatchingSettings(4, 0, 32, 0)
    # By default every core runs its own batch with one ONNX Runtime thread, and two lone
    # inputs; a number given is kept to.
    assert defaults.batching.batch_threads == usable_cores()
    assert engine_options(defaults).threads == 1
    assert engine_options(defaults).concurrency == 2 * usable_cores()
    assert engine_options(defaults).max_batch_size == 4
    assert engine_options(chosen).concurrency == 2
    one_batch = settings("--num_batch_threads=1")
    assert engine_options(one_batch).threads == usable_cores()
    assert engine_options(one_batch).concurrency == 1
    with pytest.raises(ConfigError, match="--max_batch_size must be at least 1"):
        settings("--max_batch_size=0")
    with pytest.raises(ConfigError, match="--batch_timeout_micros must be at least 0"):
        settings("--batch_timeout_micros=-5")


def test_worker_threads_run_at_a_lower_priority() -> None:
    import os
    import threading

    from pyserving.core.workers import worker_pool

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = niceness()
    with worker_pool(Settings(models=SETTINGS.models, worker_niceness=5)) as pool:
        assert pool.submit(niceness).result() == min(mine + 5, 19)
    with worker_pool(Settings(models=SETTINGS.models, worker_niceness=0)) as pool:
        assert pool.submit(niceness).result() == mine
    assert niceness() == mine  # the calling thread keeps its own
