"""Shared fixtures: the real exported model, a real server process, real photos."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving._proto import grpc_predict_v2_pb2_grpc as v2_pb_grpc
from pyserving._proto import tensorflow_serving_apis_pb2_grpc as tfs_pb_grpc
from pyserving.core.manager import ModelManager
from pyserving.core.service import Service
from pyserving.core.settings import ModelConfig, Settings
from pyserving.grpc_api.classification import ClassificationApi
from pyserving.grpc_api.oip import InferenceApi
from pyserving.grpc_api.tfs import ModelServiceApi, PredictionApi
from pyserving.rest_api.app import create_rest_app
from tests.onnx_models import (
    publish,
    write_features_servable,
    write_image_servable,
    write_text_servable,
)
from tests.processes import RunningProcess, start_server
from tests.wallpapers import FetchFailed, Unavailable, photographs

if TYPE_CHECKING:
    from tests.s3_server import S3Server

# Servers started by the tests keep OpenVINO's compiled models (--compiled_model_cache's
# default, under $XDG_CACHE_HOME) in a folder of the test run's, not in the user's ~/.cache.
TEST_CACHE = tempfile.mkdtemp(prefix="pyserving-test-cache-")
os.environ["XDG_CACHE_HOME"] = TEST_CACHE


def pytest_sessionfinish() -> None:
    """Remove the test run's cache folder."""
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def wallpapers() -> None:
    """Debian's wallpapers in the cache, fetched once; one line when they cannot be had."""
    try:
        photographs()
    except Unavailable as exc:
        pytest.skip(f"no Debian wallpapers on this machine: {exc}")
    except FetchFailed as exc:
        pytest.fail(f"could not fetch Debian's wallpapers: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def imagenet_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding EfficientNet-Lite0 exported once for the whole test session."""
    from pyserving.export.zoo import export_efficientnet_lite0

    repository = tmp_path_factory.mktemp("models")
    export_efficientnet_lite0(repository, "imagenet")
    return repository


@pytest.fixture(scope="session")
def imagenet_server(
    imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProcess]:
    """A real `pyserving serve` process serving the exported model on loopback."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    server = start_server("imagenet", imagenet_repository / "imagenet", log)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_address(imagenet_server: RunningProcess) -> str:
    """`127.0.0.1:PORT` of the session's model server."""
    return f"127.0.0.1:{imagenet_server.match.group(1)}"


def encode(array: np.ndarray, fmt: str, **options: object) -> bytes:
    """Encode an RGB array as an image file in memory."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    """scikit-image's photo of Chelsea the cat, RGB uint8."""
    return np.asarray(skimage_data.chelsea())


@pytest.fixture(scope="session")
def chelsea_jpeg(chelsea: np.ndarray) -> bytes:
    return encode(chelsea, "JPEG", quality=92)


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    """scikit-image's photo of a cup of coffee, as JPEG."""
    return encode(np.asarray(skimage_data.coffee()), "JPEG", quality=92)


# Whole files that start processes, a browser or an export; the rest run in `make test-fast`.
SLOW_FILES = ("test_deploy.py", "test_bench.py", "test_export_")
SLOW_FIXTURES = {"imagenet_repository", "imagenet_server", "server_address"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tests, and run the browser tests last.

    Playwright's sync API keeps an event loop running in the main thread for the rest of
    the session once a browser starts, and asyncio tests cannot start a loop after that.
    """
    for item in items:
        path = item.path.as_posix()
        fixtures = set(getattr(item, "fixturenames", ()))
        if "/e2e/" in path or item.path.name.startswith(SLOW_FILES) or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
    browser = [item for item in items if "/e2e/web/" in item.path.as_posix()]
    rest = [item for item in items if "/e2e/web/" not in item.path.as_posix()]
    items[:] = rest + browser


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """A real service over three tiny models: `colours` (image: red, green or blue wins),
    `lin` (features a, b: the larger one's class, A or B, wins) and `letters` (text: the
    more frequent of the letters a and b wins)."""
    publish(tmp_path / "colours", 1, write_image_servable)
    weights = np.eye(2, dtype=np.float32)
    publish(tmp_path / "lin", 1, lambda f: write_features_servable(f, weights, ["a", "b"], "AB"))
    publish(tmp_path / "letters", 1, write_text_servable)
    settings = Settings(
        models=(
            ModelConfig("colours", tmp_path / "colours"),
            ModelConfig("letters", tmp_path / "letters"),
            ModelConfig("lin", tmp_path / "lin"),
        ),
        file_system_poll_wait_seconds=0,
        max_text_chars=1000,
    )
    with ThreadPoolExecutor(2) as pool:
        manager = ModelManager(settings, pool)
        await manager.start()
        try:
            yield Service(manager, pool, settings)
        finally:
            await manager.stop()


@pytest.fixture
async def grpc_channel(service: Service) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to an in-process grpc.aio server with the gRPC adapters on `service`."""
    server = grpc.aio.server()
    pb_grpc.add_ClassificationServiceServicer_to_server(ClassificationApi(service), server)
    v2_pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceApi(service), server)
    tfs_pb_grpc.add_PredictionServiceServicer_to_server(PredictionApi(service), server)
    tfs_pb_grpc.add_ModelServiceServicer_to_server(ModelServiceApi(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


@pytest.fixture
async def rest(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the REST app on `service` in process (ASGI, no socket)."""
    app = create_rest_app(service, max_request_bytes=64 * 1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rest") as client:
        yield client


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A real S3 server (moto's) on loopback for the test module, checking credentials."""
    from tests.s3_server import S3Server

    server = S3Server()
    server.start()
    server.require_credentials()
    yield server
    server.close()
