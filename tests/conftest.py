"""Shared fixtures: the real exported model, a real server process, real photos."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from tests.processes import RunningProcess, start_server


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
