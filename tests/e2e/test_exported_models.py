"""Every exporter's servable, served by a real `pyserving serve` and classified over gRPC.

Each answer is compared with the source framework's own on the same input: scikit-learn
on all of Iris; PyTorch, Keras and a wrapped ONNX model, and Inception v3, on photos
decoded and resized exactly as the server does it.

TensorFlow never enters the pytest process (with it loaded, grpc_tools' protoc, which
other tests run, crashes): Keras work runs in a worker process, `tf_worker`.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from skimage import data as skimage_data
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pyserving.client import Client
from pyserving.errors import RemoteError
from pyserving.export import export_onnx, export_torch
from pyserving.export.labels import imagenet_labels
from pyserving.kinds import load_signature
from pyserving.kinds.base import fields_of
from pyserving.kinds.image import ImageFields
from pyserving.preprocess import decode_image
from pyserving.signature import list_versions
from tests.conftest import encode
from tests.processes import RunningProcess, run_cli, start_server

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SPECIES = ("setosa", "versicolor", "virginica")
# TensorFlow's own libraries; OpenVINO's TensorFlow frontend (libopenvino_tensorflow_*,
# py_tensorflow_frontend) is OpenVINO's parser, not the framework.
FRAMEWORK_LIBRARIES = ("libtorch", "libtensorflow", "_pywrap_tensorflow", "sklearn", "keras")
Worker = Callable[..., Any]


@pytest.fixture(scope="module")
def tf_worker() -> Iterator[Worker]:
    """`tf_worker(function, *args)`: call a function of this module in a TensorFlow process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield lambda function, *args, **kwargs: pool.apply(function, args, kwargs)


@dataclass
class Served:
    """A running server for one exported model, and its gRPC address."""

    server: RunningProcess
    version: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.match.group(1)}"


def serve(version: Path, log: Path) -> Served:
    return Served(start_server(version.parent.name, version.parent, log), version)


def assert_no_framework_loaded(served: Served) -> None:
    """The server runs ONNX Runtime only: no framework's libraries are in its memory."""
    maps = Path(f"/proc/{served.server.process.pid}/maps").read_text()
    assert not [lib for lib in FRAMEWORK_LIBRARIES if lib in maps]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return np.asarray(shifted / shifted.sum())


# --- Iris: scikit-learn ----------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_model() -> Any:
    iris = load_iris()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        iris.data, iris.target
    )


@pytest.fixture(scope="module")
def iris(iris_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Exported with the README's command, as it stands, then served."""
    import joblib

    work = tmp_path_factory.mktemp("iris")
    joblib.dump(iris_model, work / "iris.joblib")
    out = run_cli(
        "export",
        "sklearn",
        "iris.joblib",
        "--features",
        ",".join(FEATURES),
        "--labels",
        ",".join(SPECIES),
        cwd=work,
        timeout=120,
        check=True,
    ).stdout
    served = serve(work / out.strip(), work / "server.log")
    yield served
    served.server.stop()


def test_iris_served_predictions_equal_scikit_learn_on_the_whole_data_set(
    iris: Served, iris_model: Any
) -> None:
    data = load_iris().data
    expected = iris_model.predict_proba(data.astype(np.float32))
    with Client(iris.address) as client:
        for row, probabilities in zip(data, expected, strict=True):
            result = client.classify(features=dict(zip(FEATURES, map(float, row), strict=True)))
            assert [p.name for p in result.predictions] == [
                SPECIES[i] for i in np.argsort(-probabilities)
            ]
            for p in result.predictions:
                assert p.score == pytest.approx(probabilities[p.index], abs=1e-5)
    assert result.model_name == "iris"
    assert_no_framework_loaded(iris)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"petal_width": None}, "missing feature(s) petal_width"),
        ({"petal_colour": 1.0}, "unknown feature(s) petal_colour"),
        ({"sepal_width": math.nan}, "sepal_width must be finite"),
        ({"petal_length": math.inf}, "petal_length must be finite"),
    ],
)
def test_iris_bad_features_are_invalid_argument(
    iris: Served, change: dict[str, float | None], named: str
) -> None:
    good = dict(zip(FEATURES, (5.1, 3.5, 1.4, 0.2), strict=True))
    features: dict[str, float] = dict(good)
    for name, value in change.items():
        if value is None:
            del features[name]
        else:
            features[name] = value
    with Client(iris.address) as client:
        with pytest.raises(RemoteError) as info:
            client.classify(features=features)
        assert info.value.grpc_code == "INVALID_ARGUMENT"
        assert named in str(info.value)
        assert client.classify(features=good).predictions[0].name == "setosa"


def test_iris_cli_classify_with_features(iris: Served) -> None:
    args = []
    for name, value in zip(FEATURES, (6.3, 3.3, 6.0, 2.5), strict=True):
        args += ["--feature", f"{name}={value}"]
    out = run_cli("classify", "--server", iris.address, *args, timeout=60, check=True).stdout
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [row[1] for row in rows] == ["virginica", "versicolor", "setosa"]


def test_train_iris_example_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_iris.py"), "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "served predictions equal scikit-learn's on 150/150 flowers" in result.stdout
    assert "virginica" in result.stdout
    assert len(list_versions(tmp_path / "models" / "iris")) == 1


# --- Image models: PyTorch, Keras, ONNX as is --------------------------------------------

Reference = Callable[[np.ndarray], np.ndarray]  # one decoded uint8 image → probabilities
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def torch_net(seed: int, classes: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=2),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, classes),
    ).eval()


def torch_probabilities(net: torch.nn.Module) -> Reference:
    def reference(image: np.ndarray) -> np.ndarray:
        x = (image.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
        with torch.no_grad():
            logits = net(torch.from_numpy(x).permute(2, 0, 1)[None]).numpy()[0]
        return softmax(logits)

    return reference


def export_torch_model(repository: Path, worker: Callable[[], Worker]) -> tuple[Path, Reference]:
    net = torch_net(0, 6)
    version = export_torch(net, repository, "torchnet", labels=list("abcdef"), input_size=32)
    return version, torch_probabilities(net)


def save_and_export_keras(repository: Path) -> Path:
    """In the TensorFlow worker: a small Keras model saved as .keras, then exported."""
    import keras

    from pyserving.export import export_keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    model.save(repository / "cnn.keras")
    return export_keras(
        repository / "cnn.keras", repository, "kerasnet", labels="v,w,x,y,z", mean=0.5, std=0.5
    )


def keras_predict(keras_file: Path, images: np.ndarray) -> np.ndarray:
    """In the TensorFlow worker: the model's scores on its own preprocessing, x / 127.5 - 1."""
    import keras

    model = keras.models.load_model(keras_file, compile=False)
    return np.asarray(model.predict(images.astype(np.float32) / 127.5 - 1, verbose=0))


def export_keras_model(repository: Path, worker: Callable[[], Worker]) -> tuple[Path, Reference]:
    version = worker()(save_and_export_keras, repository)

    def reference(image: np.ndarray) -> np.ndarray:
        return np.asarray(worker()(keras_predict, repository / "cnn.keras", image[None])[0])

    return version, reference


def export_onnx_model(repository: Path, worker: Callable[[], Worker]) -> tuple[Path, Reference]:
    net = torch_net(2, 4)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net, (torch.zeros(1, 3, 28, 28),), str(repository / "net.onnx"),
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
        )  # fmt: skip
    version = export_onnx(
        repository / "net.onnx",
        repository,
        "onnxnet",
        labels="p,q,r,s",
        mean=IMAGENET_MEAN.tolist(),
        std=IMAGENET_STD.tolist(),
    )
    return version, torch_probabilities(net)


EXPORTERS = {"torch": export_torch_model, "keras": export_keras_model, "onnx": export_onnx_model}


@pytest.fixture(scope="module", params=list(EXPORTERS))
def image_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Reference]]:
    repository = tmp_path_factory.mktemp(request.param)

    def worker() -> Worker:
        return request.getfixturevalue("tf_worker")  # type: ignore[no-any-return]

    version, reference = EXPORTERS[request.param](repository, worker)
    served = serve(version, repository / "server.log")
    yield served, reference
    served.server.stop()


def test_image_model_answers_as_its_framework_does(
    image_model: tuple[Served, Reference], chelsea_jpeg: bytes, coffee_jpeg: bytes
) -> None:
    served, reference = image_model
    sig = load_signature(served.version)
    with Client(served.address) as client:
        for photo in (chelsea_jpeg, coffee_jpeg):
            result = client.classify(photo, top_k=sig.num_classes)
            image = fields_of(sig, ImageFields)
            expected = reference(decode_image(photo, image.height, image.width, image.resize))
            assert [p.index for p in result.predictions] == list(np.argsort(-expected))
            assert [p.name for p in result.predictions] == [
                sig.labels[i] for i in np.argsort(-expected)
            ]
            for p in result.predictions:
                assert p.score == pytest.approx(expected[p.index], abs=1e-5)
    assert_no_framework_loaded(served)


def test_one_servable_format_for_every_framework(
    iris: Served, image_model: tuple[Served, Reference]
) -> None:
    """The server sees the same documents whichever framework a servable came from."""
    features_doc = json.loads((iris.version / "servable.json").read_text())
    image_doc = json.loads((image_model[0].version / "servable.json").read_text())
    assert features_doc.keys() == image_doc.keys()
    assert features_doc["output"].keys() == image_doc["output"].keys()
    assert (image_doc["input"]["name"], image_doc["input"]["dtype"]) == ("image", "uint8")
    assert image_doc["input"]["layout"] == "NHWC"
    assert features_doc["input"]["dtype"] == "float32"
    assert {p.name for p in iris.version.iterdir()} == {
        p.name for p in image_model[0].version.iterdir()
    }


# --- Inception v3, Keras -------------------------------------------------------------------


def save_calibrated_inception_v3(path: Path, classes: int) -> Path:
    """In the TensorFlow worker: Inception v3 weights whose batch norms fit real photos.

    Pretrained weights cannot be downloaded here, and fresh ones give nearly the same
    scores for any image. Taking each batch norm's moving statistics from a batch of other
    photos, and sharpening the classifier, makes the top classes depend on the image and
    stand apart by far more than float rounding, so comparing them means something.
    """
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(weights=None, classes=classes)
    photos = [
        skimage_data.astronaut(),
        skimage_data.rocket(),
        skimage_data.immunohistochemistry(),
        skimage_data.hubble_deep_field(),
    ]
    batch = np.stack([decode_image(encode(p, "PNG"), 299, 299) for p in photos])
    x = keras.applications.inception_v3.preprocess_input(batch.astype(np.float32))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's
    model(x, training=True)
    classifier = model.layers[-1]
    kernel, bias = classifier.get_weights()
    classifier.set_weights([kernel * 3, bias])
    model.save_weights(path)
    return path


def inception_v3_predict(weights: Path, classes: int, images: np.ndarray) -> np.ndarray:
    """In the TensorFlow worker: Keras's Inception v3 with its own preprocessing."""
    import keras

    model = keras.applications.InceptionV3(weights=None, classes=classes)
    model.load_weights(weights)
    x = keras.applications.inception_v3.preprocess_input(images.astype(np.float32))
    return np.asarray(model.predict(x, verbose=0))


@pytest.fixture(scope="module")
def inception(
    tf_worker: Worker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Path]]:
    """Inception v3 (1001 classes) exported by examples/export_inception_v3.py, served."""
    work = tmp_path_factory.mktemp("inception")
    weights = tf_worker(save_calibrated_inception_v3, work / "inception_v3.weights.h5", 1001)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "export_inception_v3.py"),
            "--weights",
            str(weights),
            "--classes",
            "1001",
            "--repository",
            str(work / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr
    assert "outputs agree: max abs difference" in result.stderr
    served = serve(Path(result.stdout.strip().splitlines()[0]), work / "server.log")
    yield served, weights
    served.server.stop()


def test_inception_v3_serves_the_top_classes_keras_gives(
    inception: tuple[Served, Path], tf_worker: Worker, chelsea_jpeg: bytes, coffee_jpeg: bytes
) -> None:
    served, weights = inception
    sig = load_signature(served.version)
    image = fields_of(sig, ImageFields)
    assert (image.height, image.width, sig.num_classes) == (299, 299, 1001)
    assert sig.labels[0] == "background" and sig.labels[1:] == imagenet_labels()
    photos = (chelsea_jpeg, coffee_jpeg)
    # The same decoded and resized uint8 image the server makes, into Keras.
    images = np.stack([decode_image(p, 299, 299, image.resize) for p in photos])
    expected = tf_worker(inception_v3_predict, weights, 1001, images)
    with Client(served.address, timeout=60) as client:
        for photo, probabilities in zip(photos, expected, strict=True):
            top = client.classify(photo, top_k=5).predictions
            want = np.argsort(-probabilities)[:5]
            assert [p.index for p in top] == list(want)
            assert [p.name for p in top] == [sig.labels[i] for i in want]
            for p in top:
                # Keras (oneDNN) and ONNX Runtime pick different kernels per CPU: measured
                # 1.3e-5 apart on an AVX-512 machine; a preprocessing error would be ~1e-2.
                assert p.score == pytest.approx(probabilities[p.index], abs=5e-5)
    # The two photos get different top-5s, so a wrong image or preprocessing would show
    # (with these calibrated random weights their top-1 may coincide).
    assert list(np.argsort(-expected[0])[:5]) != list(np.argsort(-expected[1])[:5])
    assert_no_framework_loaded(served)


def test_tensorflow_stays_out_of_the_test_process() -> None:
    assert "tensorflow" not in sys.modules
