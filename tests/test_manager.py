"""The manager in-process, with real tiny servables; loading gated at the one true seam."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pyserving.core.manager import ModelManager
from pyserving.core.servable import load_servable
from pyserving.core.settings import ModelConfig, Settings
from pyserving.errors import ModelNotFound, ModelNotReady
from tests.onnx_models import publish, write_version_servable


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as pool:
        yield pool


@pytest.fixture
async def manager(tmp_path: Path, executor: ThreadPoolExecutor) -> AsyncIterator[ModelManager]:
    publish(tmp_path / "m", 1, lambda f: write_version_servable(f, 1))
    settings = Settings(models=(ModelConfig("m", tmp_path / "m"),), file_system_poll_wait_seconds=0)
    manager = ModelManager(settings, executor)
    await manager.start()
    yield manager
    await manager.stop()


def states(manager: ModelManager) -> dict[int, str]:
    return {v.version: v.state for v in manager.status("m")[0].versions}


async def test_a_loading_version_is_unavailable(
    manager: ModelManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_load = load_servable

    def slow_load(*args: Any) -> Any:
        gate.wait(10)
        return real_load(*args)

    monkeypatch.setattr("pyserving.core.manager.load_servable", slow_load)
    publish(tmp_path / "m", 2, lambda f: write_version_servable(f, 2))
    reconciling = asyncio.create_task(manager.reconcile())
    while states(manager).get(2) != "LOADING":
        await manager.changed.wait()
    with pytest.raises(ModelNotReady, match="version 2 is still loading"):
        manager.get("m", 2)
    assert manager.get("m").version == 1  # the newest *available* one
    gate.set()
    await reconciling
    assert manager.get("m").version == 2
    assert states(manager) == {1: "END", 2: "AVAILABLE"}


async def test_unloading_waits_for_requests_in_flight(
    manager: ModelManager, tmp_path: Path
) -> None:
    with manager.use("m") as held:
        assert held.version == 1
        publish(tmp_path / "m", 2, lambda f: write_version_servable(f, 2))
        reconciling = asyncio.create_task(manager.reconcile())
        while states(manager).get(1) != "UNLOADING":
            await manager.changed.wait()
        assert manager.get("m").version == 2  # new requests already go to version 2
        assert held.engine is not None  # ours can still finish
        assert not reconciling.done()
    await reconciling
    assert states(manager)[1] == "END"
    assert held.engine is None


async def test_failed_version_is_retried_once_its_files_change(
    manager: ModelManager, tmp_path: Path
) -> None:
    folder = publish(tmp_path / "m", 2, lambda f: write_version_servable(f, 2))
    (folder / "labels.txt").write_text("too few\n")
    await manager.reconcile()
    assert states(manager)[2] == "FAILED"
    assert "labels" in manager.status("m")[0].versions[-1].error
    assert manager.get("m").version == 1
    with pytest.raises(ModelNotReady, match="failed to load"):
        manager.get("m", 2)
    await manager.reconcile()  # same files: not tried again
    assert states(manager)[2] == "FAILED"
    write_version_servable(folder, 2)
    await manager.reconcile()
    assert states(manager) == {1: "END", 2: "AVAILABLE"}


async def test_unknown_model_and_version(manager: ModelManager) -> None:
    with pytest.raises(ModelNotFound, match="'nope' is not served here"):
        manager.get("nope")
    with pytest.raises(ModelNotFound, match="has no version 5"):
        manager.get("m", 5)
    assert manager.get("").name == "m"
