"""Keras / TensorFlow → servable with tf2onnx: .keras files, SavedModels, weights, errors.

Small models here, for the converter's paths; Inception v3 itself is exported and served
once, in tests/e2e/test_exported_models.py.

TensorFlow never enters the pytest process: with it loaded, grpc_tools' protoc (which
other tests run) crashes, as both carry their own protobuf. Everything that touches
TensorFlow runs in one worker process per module (`tf_worker`), the functions under
"In the TensorFlow worker"; exports come back as paths, errors as ExportError.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from pyserving.errors import ExportError
from pyserving.kinds import load_signature
from pyserving.kinds.image import ImageFields
from pyserving.signature import list_versions

LABELS = ("a", "b", "c", "d", "e")
Worker = Callable[..., Any]


@pytest.fixture(scope="module")
def tf_worker() -> Iterator[Worker]:
    """`tf_worker(function, *args)`: call a function of this module in a TensorFlow process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield lambda function, *args, **kwargs: pool.apply(function, args, kwargs)


# --- In the TensorFlow worker ------------------------------------------------------------


def small_cnn(seed: int, classes: int = 5, softmax: bool = True, size: int | None = 16) -> Any:
    """A conv net with batch norm whose moving statistics are not the defaults."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(6, 3, strides=2),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax" if softmax else None),
        ]
    )
    norm = model.layers[1]
    gamma, beta, _, _ = norm.get_weights()
    rng = np.random.default_rng(seed)
    norm.set_weights([gamma, beta, rng.uniform(-0.5, 0.5, 6), rng.uniform(0.5, 2.0, 6)])
    return model


def save_cnn(path: Path, seed: int, **options: Any) -> Path:
    """`small_cnn` saved as a .keras file, a SavedModel folder, or a .weights.h5 file."""
    model = small_cnn(seed, **options)
    if path.suffix == ".keras":
        model.save(path)
    elif path.name.endswith(".weights.h5"):
        model.save_weights(path)
    else:
        model.export(str(path), verbose=False)
    return path


def predict(keras_file: Path, images: np.ndarray, weights: Path | None = None) -> np.ndarray:
    """Keras on its own preprocessing: pixels scaled to [-1, 1], as Inception v3's."""
    import keras

    model = keras.models.load_model(keras_file, compile=False)
    if weights is not None:
        model.load_weights(weights)
    x = images.astype(np.float32) / 127.5 - 1.0
    return np.asarray(model.predict(x, verbose=0))


def export(source: Path, repository: Path, name: str, **options: Any) -> Path:
    """`export_keras` on a file or folder, as the CLI does."""
    from pyserving.export import export_keras

    return export_keras(source, repository, name, **options)


def export_object(keras_file: Path, repository: Path, name: str, **options: Any) -> Path:
    """`export_keras` on a keras.Model object, as Python users do."""
    import keras

    from pyserving.export import export_keras

    model = keras.models.load_model(keras_file, compile=False)
    return export_keras(model, repository, name, **options)


def export_dense(repository: Path) -> Path:
    import keras

    from pyserving.export import export_keras

    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    return export_keras(dense, repository, "dense", labels="a,b,c")


def save_jpeg_classifier(path: Path) -> Path:
    """The classic TensorFlow Serving export: encoded JPEG strings in, DecodeJpeg inside."""
    import tensorflow as tf

    module = tf.Module()
    module.kernel = tf.Variable(tf.ones((3, 4)))

    def serve(jpegs: Any) -> dict[str, Any]:
        def decode(data: Any) -> Any:
            return tf.image.resize(tf.image.decode_jpeg(data, channels=3), (8, 8))

        images = tf.map_fn(decode, jpegs, fn_output_signature=tf.float32)
        return {"scores": tf.reduce_mean(images, axis=[1, 2]) @ module.kernel}

    module.serve = tf.function(serve, input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


# --- In pytest -------------------------------------------------------------------------


def onnx_scores(version: Path, images: np.ndarray) -> np.ndarray:
    sig = load_signature(version)
    session = ort.InferenceSession(str(version / "model.onnx"))
    (scores,) = session.run([sig.output_name], {sig.input_name: images})
    return np.asarray(scores)


def random_images(height: int = 16, width: int = 16, count: int = 3) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def keras_file(tf_worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tf_worker(save_cnn, tmp_path_factory.mktemp("keras") / "cnn.keras", 0)
    return path


def test_keras_file_matches_keras(tmp_path: Path, tf_worker: Worker, keras_file: Path) -> None:
    version = tf_worker(export, keras_file, tmp_path, "cnn", labels=LABELS, mean=0.5, std=0.5)
    images = random_images()
    expected = tf_worker(predict, keras_file, images)
    assert np.abs(onnx_scores(version, images) - expected).max() < 1e-5
    sig = load_signature(version)
    assert (sig.kind, sig.input_name, sig.input_dtype) == ("image", "image", "uint8")
    assert (sig.fields, sig.scores) == (ImageFields(16, 16), "probabilities")
    assert sig.source["framework"] == "tensorflow"
    assert sig.source["model"] == "cnn.keras"


def test_saved_model_matches_keras(tmp_path: Path, tf_worker: Worker, keras_file: Path) -> None:
    saved = tf_worker(save_cnn, tmp_path / "saved", 0)
    version = tf_worker(export, saved, tmp_path, "cnn", labels=LABELS, mean=0.5, std=0.5)
    images = random_images()
    expected = tf_worker(predict, keras_file, images)
    assert np.abs(onnx_scores(version, images) - expected).max() < 1e-5
    assert "signature serving_default" in load_signature(version).source["model"]


def test_logits_model_with_free_input_size(tmp_path: Path, tf_worker: Worker) -> None:
    model = tf_worker(save_cnn, tmp_path / "free.keras", 1, softmax=False, size=None)
    with pytest.raises(ExportError, match="give --input-size"):
        tf_worker(export_object, model, tmp_path, "free", labels=LABELS)
    version = tf_worker(
        export_object,
        model,
        tmp_path,
        "free",
        labels=LABELS,
        input_size=(12, 20),
        mean=0.5,
        std=0.5,
    )
    sig = load_signature(version)
    assert (sig.fields, sig.scores) == (ImageFields(12, 20), "logits")
    images = random_images(12, 20)
    expected = tf_worker(predict, model, images)
    assert np.abs(onnx_scores(version, images) - expected).max() < 1e-4


def test_weights_file_is_loaded(tmp_path: Path, tf_worker: Worker, keras_file: Path) -> None:
    weights = tf_worker(save_cnn, tmp_path / "trained.weights.h5", 2)
    version = tf_worker(
        export, keras_file, tmp_path, "cnn", labels=LABELS, mean=0.5, std=0.5, weights=weights
    )
    images = random_images()
    ours = onnx_scores(version, images)
    assert np.abs(ours - tf_worker(predict, keras_file, images, weights)).max() < 1e-5
    assert np.abs(ours - tf_worker(predict, keras_file, images)).max() > 1e-3  # not the file's


def test_weights_of_another_model_are_refused(
    tmp_path: Path, tf_worker: Worker, keras_file: Path
) -> None:
    other = tf_worker(save_cnn, tmp_path / "other.weights.h5", 3, classes=7)
    with pytest.raises(ExportError, match="cannot load weights .*other.weights.h5"):
        tf_worker(export, keras_file, tmp_path, "cnn", labels=LABELS, weights=other)
    with pytest.raises(ExportError, match="no such file"):
        tf_worker(export, keras_file, tmp_path, "cnn", labels=LABELS, weights=tmp_path / "no.h5")
    assert list_versions(tmp_path / "cnn") == []


def test_ops_onnx_lacks_are_named(tmp_path: Path, tf_worker: Worker) -> None:
    saved = tf_worker(save_jpeg_classifier, tmp_path / "jpeg")
    with pytest.raises(ExportError, match="operations that ONNX does not have: DecodeJpeg"):
        tf_worker(export, saved, tmp_path / "models", "jpeg", labels="a,b,c,d")
    assert list_versions(tmp_path / "models" / "jpeg") == []


def test_1001_classes_with_background(tmp_path: Path, tf_worker: Worker) -> None:
    model = tf_worker(save_cnn, tmp_path / "bg.keras", 4, classes=6)
    with pytest.raises(ExportError, match="6 classes but 5 labels.*--background"):
        tf_worker(export_object, model, tmp_path, "bg", labels=LABELS)
    version = tf_worker(export_object, model, tmp_path, "bg", labels=LABELS, background=True)
    assert load_signature(version).labels == ("background", *LABELS)


def test_not_an_image_model(tmp_path: Path, tf_worker: Worker) -> None:
    with pytest.raises(ExportError, match=r"expected images \[N, H, W, 3\]"):
        tf_worker(export_dense, tmp_path)
    with pytest.raises(ExportError, match="no such file or folder"):
        tf_worker(export, tmp_path / "none.keras", tmp_path, "none", labels="a,b,c")


def test_cli_exports_a_keras_file(tmp_path: Path, tf_worker: Worker, keras_file: Path) -> None:
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyserving",
            "export",
            "keras",
            str(keras_file),
            "--labels",
            str(tmp_path / "labels.txt"),
            "--mean",
            "0.5",
            "--std",
            "0.5",
            "--repository",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [s.split("]")[0] for s in steps] == [f"[{i}/5" for i in range(1, 6)]
    assert "max abs difference" in result.stderr
    version = Path(result.stdout.strip())
    assert version.parent == tmp_path / "models" / "cnn"
    images = random_images()
    expected = tf_worker(predict, keras_file, images)
    assert np.abs(onnx_scores(version, images) - expected).max() < 1e-5


def test_missing_tensorflow_names_the_extra(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # as if TensorFlow were not installed
        from pyserving.cli.main import main
        sys.exit(main(["export", "keras", "model.keras", "--labels", "a,b"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 2  # a missing extra
    assert result.stderr.strip() == (
        "error: tensorflow is not installed; install it with: pip install 'pyserving[tensorflow]'"
    )


def test_tensorflow_stays_out_of_the_test_process() -> None:
    assert "tensorflow" not in sys.modules
