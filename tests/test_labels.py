"""Version labels in process: the config files, the manager, the service and every adapter
that takes one, with real tiny servables whose answer names their version."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from pyserving._proto import classification_pb2 as cls_pb
from pyserving._proto import classification_pb2_grpc as cls_grpc
from pyserving._proto import tensorflow_core_pb2 as tf
from pyserving._proto import tensorflow_serving_apis_pb2 as pb
from pyserving._proto import tensorflow_serving_apis_pb2_grpc as pb_grpc
from pyserving._proto import tensorflow_serving_config_pb2 as config_pb
from pyserving.core import labels, metrics
from pyserving.core.manager import ModelManager
from pyserving.core.model_config import read_model_config
from pyserving.core.service import Batch, Service
from pyserving.core.settings import ModelConfig, Settings, VersionPolicy
from pyserving.errors import ConfigError, InvalidInput, ModelNotFound, ModelNotReady
from pyserving.results import ModelMetadata
from tests.onnx_models import publish, write_version_servable

LABELS = {"stable": 1, "canary": 2}


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as pool:
        yield pool


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """Versions 1, 2 and 3 of model `m`; each answers class `v<version>`."""
    for version in (1, 2, 3):
        publish(tmp_path / "m", version, partial(write_version_servable, version=version))
    return tmp_path / "m"


def model(repository: Path, versions: tuple[int, ...] = (1, 2), **labels: int) -> ModelConfig:
    return ModelConfig(
        "m",
        repository,
        VersionPolicy("specific", versions=versions),
        version_labels=tuple(sorted((labels or LABELS).items())),
    )


@pytest.fixture
async def service(repository: Path, executor: ThreadPoolExecutor) -> AsyncIterator[Service]:
    settings = Settings(models=(model(repository),), file_system_poll_wait_seconds=0)
    manager = ModelManager(settings, executor)
    await manager.start()
    try:
        yield Service(manager, executor, settings)
    finally:
        await manager.stop()


# -- the rules ---------------------------------------------------------------------------


def test_resolve_follows_tf_serving() -> None:
    assert labels.resolve("m", LABELS, 0, "canary") == 2
    assert labels.resolve("m", LABELS, 7, "") == 7
    assert labels.resolve("m", LABELS, 0, "") == 0
    with pytest.raises(ModelNotFound, match=r"no version label 'beta' \(labels: canary, stable\)"):
        labels.resolve("m", LABELS, 0, "beta")
    with pytest.raises(InvalidInput, match="not both"):
        labels.resolve("m", LABELS, 1, "stable")


def test_a_label_must_name_an_available_version_unless_allowed_and_new() -> None:
    labels.check("m", LABELS, {}, {1, 2}, allow_unavailable=False)
    with pytest.raises(ConfigError, match="'canary' names version 2, which is not available"):
        labels.check("m", LABELS, {}, {1}, allow_unavailable=False)
    labels.check("m", LABELS, {}, {1}, allow_unavailable=True)  # a new label: allowed
    with pytest.raises(ConfigError, match="a label in use moves only to an available version"):
        labels.check("m", {"stable": 3}, {"stable": 1}, {1}, allow_unavailable=True)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("version_labels = { stable = 0 }", "must name a positive version"),
        ('version_labels = { stable = "1" }', "must name a positive version"),
        ('version_labels = { "a/b" = 1 }', "without '/', ':' or spaces"),
        ("version_labels = [1]", "must be a table"),
    ],
)
def test_bad_labels_in_toml_are_refused(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f'[[models]]\nname = "m"\nbase_path = "m"\n{table}\n')
    with pytest.raises(ConfigError, match=message):
        read_model_config(path)


def test_labels_are_read_from_toml_and_tf_serving_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    toml = tmp_path / "models.toml"
    toml.write_text(
        '[[models]]\nname = "m"\nbase_path = "m"\nversion_labels = { stable = 1, canary = 2 }\n'
    )
    text = tmp_path / "models.config"
    text.write_text(
        'model_config_list { config { name: "m" base_path: "m" '
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } } }'
    )
    with caplog.at_level(logging.WARNING):
        for path in (toml, text):
            (m,), _ = read_model_config(path)
            assert m.version_labels == (("canary", 2), ("stable", 1))
    assert not caplog.text


# -- the manager and the service ---------------------------------------------------------


async def test_labels_resolve_and_show_in_status_and_metadata(service: Service) -> None:
    assert service.version_of("m", 0, "stable") == 1
    assert service.version_of("", 0, "canary") == 2  # the default model
    (status,) = service.model_status("m")
    assert {v.version: v.labels for v in status.versions} == {1: ("stable",), 2: ("canary",)}
    assert service.metadata("m", 1).version_labels == (("canary", 2), ("stable", 1))
    with pytest.raises(ModelNotFound, match="model 'x' is not served here"):
        service.version_of("x", 0, "stable")


async def test_a_labelled_request_is_counted_by_label(grpc_channel: grpc.aio.Channel) -> None:
    counter = metrics.LABEL_REQUESTS.labels("m", "canary", "OK")
    before = counter._value.get()
    stub = cls_grpc.ClassificationServiceStub(grpc_channel)
    await stub.classify(cls_pb.ClassificationRequest(features={"x": 1.0}, version_label="canary"))
    assert counter._value.get() == before + 1
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.classify(cls_pb.ClassificationRequest(features={"x": 1.0}, version_label="no"))
    assert b'label="no"' not in metrics.exposition()  # only the config's labels are counted


async def test_a_label_naming_an_unavailable_version_stops_the_start(
    repository: Path, executor: ThreadPoolExecutor
) -> None:
    settings = Settings(
        models=(model(repository, (1,), stable=1, canary=2),), file_system_poll_wait_seconds=0
    )
    manager = ModelManager(settings, executor)
    try:
        with pytest.raises(ConfigError, match="'canary' names version 2, which is not available"):
            await manager.start()
    finally:
        await manager.stop()


async def test_allowed_a_new_label_may_name_a_version_before_it_loads(
    repository: Path, executor: ThreadPoolExecutor
) -> None:
    settings = Settings(
        models=(model(repository, (1,), stable=1, canary=3),),
        file_system_poll_wait_seconds=0,
        allow_version_labels_for_unavailable_models=True,
    )
    manager = ModelManager(settings, executor)
    await manager.start()
    try:
        service = Service(manager, executor, settings)
        version = service.version_of("m", 0, "canary")
        assert version == 3
        with pytest.raises(ModelNotFound, match="has no version 3"):
            service.metadata("m", version)
        # The canary's version joins the policy: the label answers once it has loaded.
        await manager.replace_config((model(repository, (1, 3), stable=1, canary=3),), "m")
        assert service.metadata("m", service.version_of("m", 0, "canary")).version == 3
    finally:
        await manager.stop()


async def test_a_reload_moves_labels_and_refuses_bad_ones_keeping_the_old(
    service: Service, repository: Path
) -> None:
    await service.replace_models((model(repository, (1, 2), stable=2, canary=2),))
    assert service.version_of("m", 0, "stable") == 2
    with pytest.raises(ConfigError, match="'stable' names version 3, which is not available"):
        await service.replace_models((model(repository, (1, 2), stable=3),))
    assert service.version_of("m", 0, "stable") == 2
    assert service.version_of("m", 0, "canary") == 2


async def test_a_label_moves_to_a_new_version_before_the_old_one_unloads(
    service: Service, repository: Path
) -> None:
    """Versions 1 and 2 give way to 2 and 3 while `stable` moves from 1 to 3: no moment in
    which `stable` names a version that is gone."""
    seen: set[int] = set()
    failures: list[Exception] = []
    done = asyncio.Event()

    async def ask() -> None:
        while not done.is_set():
            try:
                seen.add(service.metadata("m", 0, "stable").version)
            except (ModelNotFound, ModelNotReady) as exc:
                failures.append(exc)
            await asyncio.sleep(0)

    asker = asyncio.create_task(ask())
    await service.replace_models((model(repository, (2, 3), stable=3, canary=2),))
    done.set()
    await asker
    assert not failures
    assert seen == {1, 3}
    assert [v.version for v in service.model_status("m")[0].versions if v.state == "AVAILABLE"] == [
        2,
        3,
    ]


async def test_a_request_follows_its_label_to_where_it_is_when_it_runs(
    service: Service, repository: Path
) -> None:
    """The label is read at each look-up: a request still reading its body while `stable`
    moves and the version it named unloads is answered by the version `stable` names now."""
    reading = asyncio.Event()
    moved = asyncio.Event()

    async def parse(model: ModelMetadata) -> tuple[Batch, None]:
        assert model.version == 1
        reading.set()
        await moved.wait()
        return Batch(features=np.ones((1, 1), np.float32)), None

    request = asyncio.create_task(service.predict("test", "m", 0, parse, label="stable"))
    await reading.wait()
    await service.replace_models((model(repository, (2, 3), stable=3),))
    assert 1 not in [
        v.version for v in service.model_status("m")[0].versions if v.state == "AVAILABLE"
    ]
    moved.set()
    scores, _ = await request
    assert (scores.model_version, scores.labels[int(np.argmax(scores.probabilities[0]))]) == (
        3,
        "v3",
    )


async def test_a_config_file_edit_moves_labels(
    repository: Path, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    path = tmp_path / "models.toml"
    entry = f'[[models]]\nname = "m"\nbase_path = "{repository}"\nversion_policy = "all"\n'
    path.write_text(entry + "version_labels = { stable = 1 }\n")
    models, _ = read_model_config(path)
    settings = Settings(models=models, model_config_file=path, file_system_poll_wait_seconds=0)
    manager = ModelManager(settings, executor)
    await manager.start()
    try:
        assert manager.version_of("m", 0, "stable") == 1
        path.write_text(entry + "version_labels = { stable = 3 }\n")
        await manager.reload_config()
        assert manager.version_of("m", 0, "stable") == 3
        path.write_text(entry + "version_labels = { stable = 9 }\n")
        await manager.reload_config()  # logged, not raised: the last good labels stay
        assert manager.version_of("m", 0, "stable") == 3
    finally:
        await manager.stop()


# -- the adapters ------------------------------------------------------------------------


def _spec(label: str = "", version: int = 0) -> pb.ModelSpec:
    spec = pb.ModelSpec(name="m")
    if label:
        spec.version_label = label
    if version:
        spec.version.value = version
    return spec


def _x(value: float) -> tf.TensorProto:
    return tf.TensorProto(
        dtype=tf.DT_FLOAT,
        tensor_shape=tf.TensorShapeProto(dim=[tf.TensorShapeProto.Dim(size=1)] * 2),
        float_val=[value],
    )


async def test_tf_serving_grpc_takes_version_label(grpc_channel: grpc.aio.Channel) -> None:
    predictions = pb_grpc.PredictionServiceStub(grpc_channel)
    for label, version in LABELS.items():
        answer = await predictions.Predict(
            pb.PredictRequest(model_spec=_spec(label), inputs={"x": _x(1.0)})
        )
        assert answer.model_spec.version.value == version
        assert answer.outputs["classes"].string_val[0] == f"v{version}".encode()

    example = tf.Example(
        features=tf.Features(feature={"x": tf.Feature(float_list=tf.FloatList(value=[1.0]))})
    )
    classify = pb.ClassificationRequest(model_spec=_spec("canary"))
    classify.input.example_list.examples.append(example)
    classified = await predictions.Classify(classify)
    assert classified.result.classifications[0].classes[0].label == "v2"

    metadata = await predictions.GetModelMetadata(
        pb.GetModelMetadataRequest(model_spec=_spec("stable"), metadata_field=["signature_def"])
    )
    assert metadata.model_spec.version.value == 1

    status = await pb_grpc.ModelServiceStub(grpc_channel).GetModelStatus(
        pb.GetModelStatusRequest(model_spec=_spec("canary"))
    )
    assert [s.version for s in status.model_version_status] == [2]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await predictions.Predict(pb.PredictRequest(model_spec=_spec("beta"), inputs={"x": _x(1)}))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no version label 'beta' (labels: canary, stable)" in (caught.value.details() or "")


async def test_reload_config_request_moves_labels(
    grpc_channel: grpc.aio.Channel, repository: Path
) -> None:
    config = config_pb.ModelServerConfig()
    entry = config.model_config_list.config.add(name="m", base_path=str(repository))
    entry.model_version_policy.specific.versions.extend([1, 2])
    entry.version_labels["stable"] = 2
    models = pb_grpc.ModelServiceStub(grpc_channel)
    reloaded = await models.HandleReloadConfigRequest(pb.ReloadConfigRequest(config=config))
    assert reloaded.status.error_code == 0
    answer = await pb_grpc.PredictionServiceStub(grpc_channel).Predict(
        pb.PredictRequest(model_spec=_spec("stable"), inputs={"x": _x(1.0)})
    )
    assert answer.model_spec.version.value == 2

    entry.version_labels["stable"] = 3
    refused = await models.HandleReloadConfigRequest(pb.ReloadConfigRequest(config=config))
    assert refused.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "names version 3, which is not available" in refused.status.error_message


async def test_classification_service_takes_version_label(grpc_channel: grpc.aio.Channel) -> None:
    stub = cls_grpc.ClassificationServiceStub(grpc_channel)
    answer = await stub.classify(
        cls_pb.ClassificationRequest(model_name="m", features={"x": 1.0}, version_label="canary")
    )
    assert (answer.model_version, answer.classes[0].name) == (2, "v2")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.classify(
            cls_pb.ClassificationRequest(
                model_name="m", features={"x": 1.0}, model_version=1, version_label="canary"
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = await stub.get_model_status(cls_pb.ModelStatusRequest(model_name="m"))
    assert {v.version: list(v.labels) for v in status.models[0].versions} == {
        1: ["stable"],
        2: ["canary"],
    }


async def test_rest_label_routes(rest: httpx.AsyncClient) -> None:
    status = await rest.get("/v1/models/m/labels/canary")
    assert status.status_code == 200
    assert [s["version"] for s in status.json()["model_version_status"]] == ["2"]
    metadata = (await rest.get("/v1/models/m/labels/stable/metadata")).json()
    assert metadata["model_spec"]["version"] == "1"
    assert metadata["metadata"]["version_labels"] == {"canary": "2", "stable": "1"}
    predicted = await rest.post("/v1/models/m/labels/canary:predict", json={"instances": [[1.0]]})
    assert predicted.status_code == 200, predicted.text
    (probabilities,) = predicted.json()["predictions"]
    assert probabilities.index(max(probabilities)) == 2  # class v2
    classified = await rest.post(
        "/v1/models/m/labels/stable:classify", json={"examples": [{"x": 1.0}]}
    )
    assert classified.status_code == 200, classified.text
    assert classified.json()["results"][0][0][0] == "v1"
    unknown = await rest.post("/v1/models/m/labels/beta:predict", json={"instances": [[1.0]]})
    assert unknown.status_code == 404
    assert (
        unknown.json()["error"] == "model 'm' has no version label 'beta' (labels: canary, stable)"
    )
    versioned = await rest.get("/v1/models/m/versions/2/metadata")
    assert versioned.json()["model_spec"]["version"] == "2"
