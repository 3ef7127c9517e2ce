"""The batcher with a fake servable: a function that records every batch it runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pyserving.batcher import Batcher
from pyserving.errors import DeadlineExceeded, QueueFull


class FakeModel:
    """Doubles its inputs; can be held at a gate so requests pile up behind a running batch."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(len(batch))
        if np.any(batch < 0):
            raise ValueError("negative input")
        return batch * 2


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as pool:
        yield pool


async def _wait_entered(model: FakeModel) -> None:
    await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 10)


async def test_single_request_runs_at_once(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor, max_batch_size=8)
    out = await batcher.submit(np.array([1.0, 2.0]))
    assert out.tolist() == [2.0, 4.0]
    assert model.batches == [1]


async def test_requests_queued_behind_a_batch_run_together(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher(model, executor, max_batch_size=4)
    first = asyncio.ensure_future(batcher.submit(np.array([0.0])))
    await _wait_entered(model)
    rest = [asyncio.ensure_future(batcher.submit(np.array([float(i)]))) for i in range(1, 7)]
    await asyncio.sleep(0)
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    assert [r.tolist() for r in results] == [[2.0 * i] for i in range(7)]
    assert model.batches == [1, 4, 2]


async def test_full_queue_fails_fast(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher(model, executor, max_batch_size=2, max_enqueued_batches=1)
    running = asyncio.ensure_future(batcher.submit(np.array([0.0])))
    await _wait_entered(model)
    queued = [asyncio.ensure_future(batcher.submit(np.array([1.0]))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull, match="queue is full"):
        await batcher.submit(np.array([1.0]))
    model.gate.set()
    await asyncio.gather(running, *queued)


async def test_expired_request_is_dropped_before_compute(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher(model, executor, max_batch_size=8)
    running = asyncio.ensure_future(batcher.submit(np.array([0.0])))
    await _wait_entered(model)
    loop = asyncio.get_running_loop()
    expired = asyncio.ensure_future(batcher.submit(np.array([5.0]), deadline=loop.time()))
    alive = asyncio.ensure_future(batcher.submit(np.array([6.0]), deadline=loop.time() + 60))
    await asyncio.sleep(0)
    model.gate.set()
    with pytest.raises(DeadlineExceeded):
        await expired
    assert (await alive).tolist() == [12.0]
    await running
    assert model.batches == [1, 1]  # the expired one cost nothing


async def test_cancelled_request_is_skipped(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher(model, executor, max_batch_size=8)
    running = asyncio.ensure_future(batcher.submit(np.array([0.0])))
    await _wait_entered(model)
    cancelled = asyncio.ensure_future(batcher.submit(np.array([1.0])))
    await asyncio.sleep(0)
    cancelled.cancel()
    kept = asyncio.ensure_future(batcher.submit(np.array([2.0])))
    await asyncio.sleep(0)
    model.gate.set()
    assert (await kept).tolist() == [4.0]
    await running
    assert model.batches == [1, 1]
    await batcher.wait_idle()
    assert batcher.queue_depth == 0


async def test_failure_reaches_every_caller_and_batcher_recovers(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor)
    with pytest.raises(ValueError, match="negative"):
        await batcher.submit(np.array([-1.0]))
    assert (await batcher.submit(np.array([3.0]))).tolist() == [6.0]
