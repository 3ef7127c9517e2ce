"""The batcher with a fake servable: a function that records every batch it runs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest

from pyserving.core.batcher import Batcher
from pyserving.errors import DeadlineExceeded, InvalidInput, QueueFull


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


async def test_timeout_waits_for_more_and_runs_once_the_batch_is_full(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor, max_batch_size=4, batch_timeout_micros=60_000_000)
    first = asyncio.ensure_future(batcher.submit(np.array([1.0])))
    await asyncio.sleep(0)  # the drain loop starts and waits for more
    rest = [asyncio.ensure_future(batcher.submit(np.array([float(i)]))) for i in range(2, 5)]
    async with asyncio.timeout(10):  # far below the batch timeout: a full batch runs at once
        results = await asyncio.gather(first, *rest)
    assert [r.tolist() for r in results] == [[2.0], [4.0], [6.0], [8.0]]
    assert model.batches == [4]


async def test_timeout_runs_a_partial_batch_once_its_oldest_request_waited_that_long(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor, max_batch_size=8, batch_timeout_micros=50_000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.ensure_future(batcher.submit(np.array([1.0])))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.submit(np.array([2.0])))
    assert [r.tolist() for r in await asyncio.gather(first, second)] == [[2.0], [4.0]]
    assert model.batches == [2]
    assert loop.time() - started >= 0.05 - 1e-3


async def test_request_whose_deadline_passes_while_the_batch_fills_is_dropped(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor, max_batch_size=8, batch_timeout_micros=50_000)
    loop = asyncio.get_running_loop()
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(np.array([1.0]), deadline=loop.time() + 0.01)
    assert model.batches == []


async def test_zero_timeout_never_waits_for_more(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher(model, executor, max_batch_size=8, batch_timeout_micros=0)
    first = asyncio.ensure_future(batcher.submit(np.array([1.0])))
    await _wait_entered(model)  # ran alone, with seven free places in its batch
    second = asyncio.ensure_future(batcher.submit(np.array([2.0])))
    await asyncio.sleep(0)
    model.gate.set()
    assert [r.tolist() for r in await asyncio.gather(first, second)] == [[2.0], [4.0]]
    assert model.batches == [1, 1]


async def test_queue_wait_is_reported_for_every_input_that_runs(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    model.gate.clear()
    waits: list[float] = []
    batcher = Batcher(model, executor, max_batch_size=2, on_queue_wait=waits.append)
    first = asyncio.ensure_future(batcher.submit(np.array([1.0])))
    await _wait_entered(model)
    queued = [asyncio.ensure_future(batcher.submit(np.array([float(i)]))) for i in (2, 3)]
    await asyncio.sleep(0.02)  # they wait behind the first, which is held at the gate
    model.gate.set()
    await asyncio.gather(first, *queued)
    assert len(waits) == 3
    assert waits[0] < 0.02 <= min(waits[1:])


async def test_admission_turns_requests_away_once_queue_and_running_batches_are_full(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor, max_batch_size=2, max_enqueued_batches=2)
    # Room for two waiting batches and one running batch: six inputs.
    with batcher.admit(4), batcher.admit(2):
        with pytest.raises(QueueFull, match="the batching queue is full"), batcher.admit():
            pass
        assert model.batches == []  # turned away before costing anything
    with batcher.admit(4):  # places are given back when requests end
        pass
    with pytest.raises(RuntimeError), batcher.admit(4):
        raise RuntimeError("a failed request gives its places back too")
    with batcher.admit(4):
        assert (await batcher.submit(np.array([1.0]))).tolist() == [2.0]


async def test_a_request_larger_than_the_queue_is_invalid_not_retryable(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor, max_batch_size=2, max_enqueued_batches=2)
    too_many = "holds 5 inputs; one request can hold at most 4"
    with pytest.raises(InvalidInput, match=too_many), batcher.admit(5):
        pass
    with batcher.admit(4):  # the largest request fits on an idle server, all at once
        rows = await asyncio.gather(*(batcher.submit(np.array([float(i)])) for i in range(4)))
    assert [r.tolist() for r in rows] == [[0.0], [2.0], [4.0], [6.0]]


async def test_idle_batcher_prepares_and_runs_an_input_in_one_trip(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    waits: list[float] = []
    batcher = Batcher(model, executor, max_batch_size=8, on_queue_wait=waits.append)
    prepared_in: list[str] = []

    def prepare() -> np.ndarray:
        prepared_in.append(threading.current_thread().name)
        return np.array([5.0])

    row = await batcher.run_alone(prepare)
    assert row is not None and row.tolist() == [10.0]
    assert model.batches == [1] and waits == [0.0]
    assert prepared_in and prepared_in[0] != threading.main_thread().name  # off the loop
    await asyncio.wait_for(batcher.wait_idle(), 1)


async def test_busy_batcher_declines_and_drains_what_queued_meanwhile(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher(model, executor, max_batch_size=8, num_batch_threads=1)
    alone = asyncio.ensure_future(batcher.run_alone(lambda: np.array([1.0])))
    await _wait_entered(model)  # it holds the only batch thread
    prepared = False

    def prepare() -> np.ndarray:
        nonlocal prepared
        prepared = True
        return np.array([0.0])

    assert await batcher.run_alone(prepare) is None and not prepared
    queued = [asyncio.ensure_future(batcher.submit(np.array([float(i)]))) for i in (2, 3)]
    await asyncio.sleep(0)
    model.gate.set()
    first = await alone
    assert first is not None and first.tolist() == [2.0]
    assert [r.tolist() for r in await asyncio.gather(*queued)] == [[4.0], [6.0]]
    assert model.batches == [1, 2]


class HeldModel:
    """Doubles its inputs; the input with value v waits until `gate(v)` is set, and sets
    `started(v)` when it starts."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, float], threading.Event] = {}
        self.running: list[float] = []
        self.batches: list[list[float]] = []
        self._lock = threading.Lock()

    def _event(self, what: str, value: float) -> threading.Event:
        with self._lock:
            return self._events.setdefault((what, value), threading.Event())

    def gate(self, value: float) -> threading.Event:
        return self._event("gate", value)

    async def started(self, value: float) -> None:
        started = self._event("started", value)
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        values = [float(v) for v in batch[:, 0]]
        with self._lock:
            self.running += values
        for v in values:
            self._event("started", v).set()
        for v in values:
            self.gate(v).wait(10)
        with self._lock:
            self.batches.append(values)
            for v in values:
                self.running.remove(v)
        return batch * 2


async def test_lone_inputs_run_beside_each_other_up_to_lone_threads(
    executor: ThreadPoolExecutor,
) -> None:
    model = HeldModel()
    batcher = Batcher(model, executor, max_batch_size=4, num_batch_threads=1, lone_threads=2)
    lone = [asyncio.ensure_future(batcher.run_alone(partial(np.array, [v]))) for v in (1.0, 2.0)]
    await model.started(1.0)
    await model.started(2.0)  # both at once, with one batch thread
    assert await batcher.run_alone(lambda: np.array([3.0])) is None  # a third is declined
    queued = asyncio.ensure_future(batcher.submit(np.array([3.0])))
    model.gate(1.0).set()
    first = await lone[0]
    assert first is not None and first.tolist() == [2.0]
    # The queued input starts as soon as a call ends, while the other lone input still runs.
    model.gate(3.0).set()
    assert (await asyncio.wait_for(queued, 10)).tolist() == [6.0]
    assert model.running == [2.0]
    model.gate(2.0).set()
    second = await lone[1]
    assert second is not None and second.tolist() == [4.0]
    assert model.batches == [[1.0], [3.0], [2.0]]
    await asyncio.wait_for(batcher.wait_idle(), 10)


async def test_run_alone_drops_an_input_whose_deadline_passed_while_it_was_prepared(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    batcher = Batcher(model, executor)
    deadline = asyncio.get_running_loop().time() + 0.01

    def slow_prepare() -> np.ndarray:
        time.sleep(0.02)  # the work that outlasts the deadline
        return np.array([1.0])

    with pytest.raises(DeadlineExceeded):
        await batcher.run_alone(slow_prepare, deadline)
    assert model.batches == []


async def test_exception_fails_exactly_the_requests_of_its_batch(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher(model, executor, max_batch_size=2)
    first = asyncio.ensure_future(batcher.submit(np.array([1.0])))
    await _wait_entered(model)
    # Queued behind it: one batch with a bad input and its neighbour, then another batch.
    same_batch = [asyncio.ensure_future(batcher.submit(np.array([x]))) for x in (-1.0, 2.0)]
    later = asyncio.ensure_future(batcher.submit(np.array([3.0])))
    await asyncio.sleep(0)
    model.gate.set()
    outcomes = await asyncio.gather(first, *same_batch, later, return_exceptions=True)
    assert model.batches == [1, 2, 1]
    assert isinstance(outcomes[0], np.ndarray) and outcomes[0].tolist() == [2.0]
    assert all(isinstance(o, ValueError) for o in outcomes[1:3])
    assert isinstance(outcomes[3], np.ndarray) and outcomes[3].tolist() == [6.0]


async def test_inputs_of_different_shapes_are_never_stacked(executor: ThreadPoolExecutor) -> None:
    """Clips of different lengths: each batch holds one shape; the others keep their order."""
    model = FakeModel()
    model.gate.clear()
    shapes: list[tuple[int, ...]] = []

    def run(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return model(batch)

    batcher = Batcher(run, executor, max_batch_size=4)
    first = asyncio.ensure_future(batcher.submit(np.ones(1)))
    await _wait_entered(model)
    lengths = [2, 3, 2, 3, 2, 5, 2, 2, 2]
    queued = [
        asyncio.ensure_future(batcher.submit(np.full(n, float(i)))) for i, n in enumerate(lengths)
    ]
    await asyncio.sleep(0)
    model.gate.set()
    results = await asyncio.gather(first, *queued)
    assert [r.tolist() for r in results[1:]] == [[2.0 * i] * n for i, n in enumerate(lengths)]
    assert shapes == [(1, 1), (4, 2), (2, 3), (1, 5), (2, 2)]
