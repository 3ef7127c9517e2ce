"""Dynamic batching for one servable: concurrent requests share one inference call.

The batcher never waits to fill a batch: a drain task takes whatever is queued (up to
`max_batch_size`), runs it in the thread pool, and repeats while work remains. On a CPU
that keeps latency at its floor at low load and batches naturally under high load.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from pyserving.errors import DeadlineExceeded, QueueFull


@dataclass
class _Item:
    array: np.ndarray
    future: asyncio.Future[np.ndarray]
    deadline: float | None  # event-loop time


class Batcher:
    """Queues single inputs and runs them in batches through `run`.

    Called from the event loop only; `run` (stacked inputs → one output row per input)
    executes in `executor`. `submit` raises QueueFull when `max_enqueued_batches` batches
    are already waiting and DeadlineExceeded when the deadline passed before inference.
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        executor: Executor,
        max_batch_size: int = 8,
        max_enqueued_batches: int = 16,
        num_batch_threads: int = 1,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self._max_queued = self.max_batch_size * max(1, max_enqueued_batches)
        self._num_threads = max(1, num_batch_threads)
        self._queue: deque[_Item] = deque()
        self._active = 0  # drain loops running; changed only between awaits
        self._tasks: set[asyncio.Task[None]] = set()  # strong references, so tasks aren't GC'd
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def submit(self, array: np.ndarray, deadline: float | None = None) -> np.ndarray:
        """Run `array` (one input, no batch axis) and return its output row."""
        if len(self._queue) >= self._max_queued:
            raise QueueFull(
                f"the batching queue is full ({len(self._queue)} requests waiting); retry later"
            )
        loop = asyncio.get_running_loop()
        item = _Item(array, loop.create_future(), deadline)
        self._queue.append(item)
        if self._active < self._num_threads:
            self._active += 1
            self._idle.clear()
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await item.future

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running."""
        await self._idle.wait()

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            # No await between the loop seeing an empty queue and this, so a request
            # submitted meanwhile always finds a drain loop or starts one.
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _drain_queue(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch = self._take(loop.time())
            if not batch:
                continue
            try:
                rows = await loop.run_in_executor(
                    self._executor, self._run_stacked, [item.array for item in batch]
                )
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            else:
                for item, row in zip(batch, rows, strict=True):
                    if not item.future.done():
                        item.future.set_result(row)

    def _take(self, now: float) -> list[_Item]:
        batch: list[_Item] = []
        while self._queue and len(batch) < self.max_batch_size:
            item = self._queue.popleft()
            if item.future.done():  # cancelled by its caller
                continue
            if item.deadline is not None and item.deadline <= now:
                item.future.set_exception(
                    DeadlineExceeded("the request's deadline passed while it waited in the queue")
                )
                continue
            batch.append(item)
        return batch

    def _run_stacked(self, arrays: list[np.ndarray]) -> np.ndarray:
        return self._run(np.stack(arrays))
