"""OpenVINO's compiled models (fixed batches, a free batch axis, a lone input's latency)
and its cache."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pyserving.cli.main import build_parser
from pyserving.cli.serve import serve_settings
from pyserving.engines import EngineOptions, compiled_cache, load_engine
from pyserving.engines import openvino as openvino_engine
from pyserving.engines.openvino import STATIC_BATCHES, pieces_of
from pyserving.reference import load_reference
from pyserving.signature import MODEL_FILE
from tests.onnx_models import write_features_servable

TWO_CALLS = EngineOptions(threads=1, concurrency=2)


@pytest.fixture(scope="module")
def imagenet_version(imagenet_repository: Path) -> Path:
    (version,) = (imagenet_repository / "imagenet").iterdir()
    return version


def test_a_lone_input_and_a_batch_give_the_same_answers(imagenet_version: Path) -> None:
    reference = load_reference(imagenet_version)
    assert reference is not None
    engine = load_engine("openvino", imagenet_version / MODEL_FILE, TWO_CALLS)
    try:
        assert engine._latency is not None  # type: ignore[attr-defined]
        batched = engine.run(reference.inputs)
        alone = np.concatenate([engine.run(row[None]) for row in reference.inputs])
        with ThreadPoolExecutor(4) as pool:
            together = np.concatenate(
                list(pool.map(lambda r: engine.run(r[None]), reference.inputs))
            )
    finally:
        engine.close()
    expected = reference.outputs.argmax(axis=1).tolist()
    for scores in (batched, alone, together):
        assert scores.shape == reference.outputs.shape
        assert scores.argmax(axis=1).tolist() == expected
    np.testing.assert_allclose(alone, batched, atol=1e-3)
    with pytest.raises(Exception, match="unloaded"):
        engine.run(reference.inputs[:1])


def test_only_a_model_whose_batch_axis_alone_is_free_gets_a_latency_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_features_servable(tmp_path / "1", np.eye(2, 3), ["a", "b"])
    caplog.set_level(logging.INFO, "pyserving.engines.openvino")
    engine = load_engine("openvino", folder / MODEL_FILE, TWO_CALLS, "features", "logits")
    one_call = load_engine("openvino", folder / MODEL_FILE, EngineOptions(), "features", "logits")
    try:
        assert engine._latency is not None  # type: ignore[attr-defined]
        assert one_call._latency is None  # type: ignore[attr-defined]
        x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]], np.float32)
        np.testing.assert_allclose(engine.run(x[:1]), x[:1] @ np.eye(2, 3), atol=1e-6)
        np.testing.assert_allclose(engine.run(x), x @ np.eye(2, 3), atol=1e-6)
    finally:
        engine.close()
        one_call.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "pyserving.engines.openvino"]
    assert "latency: 1 stream x 2 threads, batch 1, for a lone input" in lines[0]
    assert (
        "throughput: 2 streams x 1 thread(s) for 2 calls at once, batches of 4, 2, 1 fixed"
        in (lines[0])
    )
    assert "no latency model (one call at a time" in lines[1]


def test_a_batch_runs_in_fixed_pieces_with_the_same_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_features_servable(tmp_path / "1", np.eye(2, 3), ["a", "b"])
    caplog.set_level(logging.INFO, "pyserving.engines.openvino")
    options = EngineOptions(threads=1, concurrency=2, max_batch_size=2)
    engine = load_engine("openvino", folder / MODEL_FILE, options, "features", "logits")
    x = np.arange(18, dtype=np.float32).reshape(9, 2) - 4
    try:
        for rows in range(1, 10):  # 1, 2, then pieces: 3 = 2 + 1, ..., 9 = 2 + 2 + 2 + 2 + 1
            np.testing.assert_allclose(engine.run(x[:rows]), x[:rows] @ np.eye(2, 3), atol=1e-5)
        named = engine.run_named({"features": x})  # the model with a free batch axis
        np.testing.assert_allclose(named["logits"], x @ np.eye(2, 3), atol=1e-5)
    finally:
        engine.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "pyserving.engines.openvino"]
    assert "batches of 2, 1 fixed (larger ones in pieces)" in line


def test_a_model_over_the_size_limit_keeps_only_its_free_batch_axis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_features_servable(tmp_path / "1", np.eye(2, 3), ["a", "b"])
    monkeypatch.setattr(
        openvino_engine, "STATIC_MAX_BYTES", (folder / MODEL_FILE).stat().st_size - 1
    )
    caplog.set_level(logging.INFO, "pyserving.engines.openvino")
    engine = load_engine("openvino", folder / MODEL_FILE, TWO_CALLS, "features", "logits")
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    try:
        assert engine._fixed == {}  # type: ignore[attr-defined]
        np.testing.assert_allclose(engine.run(x), x @ np.eye(2, 3), atol=1e-5)
    finally:
        engine.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "pyserving.engines.openvino"]
    assert "for 2 calls at once, any batch (a free batch axis)" in line


def test_infer_requests_are_made_at_load_and_none_while_serving(tmp_path: Path) -> None:
    """Each compiled model gets one request per call that may run at once, made at load."""
    folder = write_features_servable(tmp_path / "1", np.eye(2, 3), ["a", "b"])
    engine = load_engine("openvino", folder / MODEL_FILE, TWO_CALLS, "features", "logits")
    models = [engine._throughput, engine._latency, *engine._fixed.values()]  # type: ignore[attr-defined]
    made = [m._requests.qsize() for m in models]
    assert made == [2, 1, 2, 2, 2]  # a request per call that may run at once
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    try:
        batches = [x[:n] for n in range(1, 8)] * 4
        with ThreadPoolExecutor(2) as pool:  # two calls at once, as the batcher allows
            for batch, answer in zip(batches, pool.map(engine.run, batches), strict=True):
                np.testing.assert_allclose(answer, batch @ np.eye(2, 3), atol=1e-5)
    finally:
        engine.close()
    assert [m._requests.qsize() for m in models] == made  # none made while serving


def test_pieces_of_a_batch_are_the_largest_fixed_sizes_first() -> None:
    sizes = dict.fromkeys((4, 2, 1))
    assert [pieces_of(n, sizes) for n in (1, 3, 4, 7, 8, 11)] == [
        [1],
        [2, 1],
        [4],
        [4, 2, 1],
        [4, 4],
        [4, 4, 2, 1],
    ]


def cache_options(folder: Path) -> EngineOptions:
    return EngineOptions(threads=1, concurrency=2, compiled_model_cache=str(folder))


def test_an_unwritable_cache_loads_without_it_with_one_warning(
    imagenet_version: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    options = cache_options(blocker / "cache")  # even root cannot create a folder in a file
    reference = load_reference(imagenet_version)
    assert reference is not None
    for _ in range(2):
        engine = load_engine("openvino", imagenet_version / MODEL_FILE, options)
        try:
            scores = engine.run(reference.inputs[:1])
        finally:
            engine.close()
        assert scores.argmax(axis=1).tolist() == reference.outputs[:1].argmax(axis=1).tolist()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"compiled-model cache {blocker / 'cache'} is not writable (")
    assert warnings[0].endswith("); loading models without it")


def test_the_cache_is_written_and_used(imagenet_version: Path, tmp_path: Path) -> None:
    cache = tmp_path / "deep" / "cache"  # created when missing
    engine = load_engine("openvino", imagenet_version / MODEL_FILE, cache_options(cache))
    engine.close()
    (folder,) = cache.iterdir()  # one folder per model file
    blobs = sorted(folder.iterdir())
    # A blob per input shape: the free batch axis and each fixed batch size (OpenVINO's
    # key leaves out the streams and threads, so the latency model shares batch 1's).
    assert len(blobs) == 1 + len(STATIC_BATCHES)
    stamps = [b.stat().st_mtime_ns for b in blobs]
    engine = load_engine("openvino", imagenet_version / MODEL_FILE, cache_options(cache))
    engine.close()
    assert list(cache.iterdir()) == [folder] and sorted(folder.iterdir()) == blobs
    assert [b.stat().st_mtime_ns for b in blobs] == stamps  # read, not written again


def test_the_least_recently_used_models_leave_a_full_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiled_cache, "MAX_BYTES", 1)
    cache = tmp_path / "cache"
    folders = []
    for number in range(3):
        folder = write_features_servable(tmp_path / str(number), np.eye(2, 3) * number, ["a", "b"])
        engine = load_engine("openvino", folder / MODEL_FILE, cache_options(cache), "", "logits")
        engine.close()
        folders.append(set(cache.iterdir()))
    # Each load keeps its own model's folder and removes the older ones over the limit.
    assert [len(f) for f in folders] == [1, 1, 1]
    assert len(folders[0] | folders[1] | folders[2]) == 3


def test_the_cache_flag_defaults_under_the_users_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def settings(*flags: str) -> Path | None:
        args = build_parser().parse_args(["serve", "--model_base_path", str(tmp_path), *flags])
        return serve_settings(args).compiled_model_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings() == tmp_path / "xdg" / "pyserving" / "openvino"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert settings() == tmp_path / "home" / ".cache" / "pyserving" / "openvino"
    assert settings("--compiled_model_cache", "") is None
    assert settings("--compiled_model_cache", "/srv/c") == Path("/srv/c")
