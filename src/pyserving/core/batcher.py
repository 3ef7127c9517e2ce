"""Dynamic batching for one servable: concurrent requests share one inference call.

By default (`batch_timeout_micros` 0) the batcher never waits to fill a batch: a drain task
takes whatever is queued (up to `max_batch_size`), runs it in the thread pool, and repeats
while work remains. On a CPU that keeps latency at its floor at low load and batches
naturally under high load. With a timeout (for accelerators, where a fuller batch is
nearly free), a partial batch waits until it is full or its oldest request has waited
that long, as in TensorFlow Serving.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyserving.errors import DeadlineExceeded, InvalidInput, QueueFull


@dataclass
class _Item:
    array: Any  # an input as the servable's kind prepared it; an array for classifiers
    future: asyncio.Future[Any]
    deadline: float | None  # event-loop time
    enqueued: float  # event-loop time


class Batcher:
    """Queues single inputs and runs them in batches through `run`.

    Called from the event loop only; `run` (stacked inputs → one output row per input)
    executes in `executor`. `submit` raises QueueFull when `max_enqueued_batches` batches
    are already waiting and DeadlineExceeded when the deadline passed before inference.
    `admit` applies the same bound earlier, to whole requests from their arrival (before
    they cost decoding), counting the batches running as well as those waiting.
    `batch_timeout_micros` > 0 lets a partial batch wait that long (from its oldest
    request) for more requests; 0 runs whatever is queued at once. `on_queue_wait` is
    told, in seconds, how long each input that goes on to run waited. `stack` makes one
    batch of the inputs taken (np.stack by default; a tensor model's named inputs stack
    otherwise); an exception that `run` returns in place of an input's row fails that
    input alone. `lone_threads` (at least `num_batch_threads`) bounds the calls running
    at once when an input arrives to an empty queue and runs alone (`run_alone`).
    """

    def __init__(
        self,
        run: Callable[[Any], Any],
        executor: Executor,
        max_batch_size: int = 8,
        max_enqueued_batches: int = 16,
        num_batch_threads: int = 1,
        lone_threads: int = 0,
        batch_timeout_micros: int = 0,
        on_queue_wait: Callable[[float], None] | None = None,
        stack: Callable[[list[Any]], Any] = np.stack,
    ) -> None:
        self._run = run
        self._stack = stack
        self._executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self._max_queued = self.max_batch_size * max(1, max_enqueued_batches)
        self._num_threads = max(1, num_batch_threads)
        self._lone_threads = max(self._num_threads, lone_threads)
        self._timeout = max(0, batch_timeout_micros) / 1_000_000  # seconds
        self._on_queue_wait = on_queue_wait
        self._full = asyncio.Event()  # set when a whole batch is queued; for the timeout
        self._queue: deque[_Item] = deque()
        self._admitted = 0  # inputs of requests inside `admit`
        self._max_admitted = self._max_queued + self.max_batch_size * self._num_threads
        self._active = 0  # calls running (drain loops and lone inputs); changed between awaits
        self._draining = 0  # drain loops running
        self._tasks: set[asyncio.Task[None]] = set()  # strong references, so tasks aren't GC'd
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @contextmanager
    def admit(self, inputs: int = 1) -> Iterator[None]:
        """Hold places for a request's `inputs` while it is decoded, queued and run.

        Raises QueueFull at once when the queue and the running batches are full, so an
        overloaded server turns requests away before spending CPU on them, and InvalidInput
        for a request that could never fit in the queue, however idle the server.
        """
        if inputs > self._max_queued:
            raise InvalidInput(
                f"the request holds {inputs} inputs; one request can hold at most "
                f"{self._max_queued} (max_batch_size × max_enqueued_batches): send fewer "
                "per request"
            )
        if self._admitted + inputs > self._max_admitted:
            raise QueueFull(
                f"the batching queue is full ({self._admitted} inputs queued or running, "
                f"at most {self._max_admitted}); retry later"
            )
        self._admitted += inputs
        try:
            yield
        finally:
            self._admitted -= inputs

    async def submit(self, array: Any, deadline: float | None = None) -> Any:
        """Run `array` (one input, no batch axis) and return its output row."""
        if len(self._queue) >= self._max_queued:
            raise QueueFull(
                f"the batching queue is full ({len(self._queue)} requests waiting); retry later"
            )
        loop = asyncio.get_running_loop()
        item = _Item(array, loop.create_future(), deadline, loop.time())
        self._queue.append(item)
        if self._timeout and len(self._queue) >= self.max_batch_size:
            self._full.set()
        if self._may_drain():
            self._start_drain(loop)
        return await item.future

    async def run_alone(
        self, prepare: Callable[[], Any], deadline: float | None = None
    ) -> Any | None:
        """Prepare one input and run it in a single trip to the pool, when no batch could
        take it with others: nothing is queued and fewer than `lone_threads` calls run.

        Returns None, having done nothing, when that is not so (or when batches wait for a
        timeout): then prepare the input and `submit` it. At low load this saves a round
        trip between the pool and the event loop on every request. Up to `lone_threads`
        calls may be running for a lone input to start; a drain loop starts only while
        fewer than `num_batch_threads` are.
        """
        if self._queue or self._active >= self._lone_threads or self._timeout:
            return None
        loop = asyncio.get_running_loop()
        self._active += 1
        self._idle.clear()
        try:
            return await loop.run_in_executor(self._executor, self._run_alone, prepare, deadline)
        finally:
            self._release_thread(loop, drain=False)

    def _run_alone(self, prepare: Callable[[], Any], deadline: float | None) -> Any:
        array = prepare()
        # time.monotonic is the event loop's clock.
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExceeded("the request's deadline passed before inference")
        if self._on_queue_wait is not None:
            self._on_queue_wait(0.0)
        batch = array[np.newaxis] if self._stack is np.stack else self._stack([array])
        row = self._run(batch)[0]
        if isinstance(row, BaseException):
            raise row
        return row

    def _may_drain(self) -> bool:
        return self._draining < self._num_threads and self._active < self._lone_threads

    def _start_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        self._active += 1
        self._draining += 1
        self._idle.clear()
        task = loop.create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running."""
        await self._idle.wait()

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            self._release_thread(asyncio.get_running_loop(), drain=True)

    def _release_thread(self, loop: asyncio.AbstractEventLoop, drain: bool) -> None:
        """Give a batch thread back; start a drain loop for whatever queued meanwhile.

        No await between a drain loop seeing an empty queue and this, so a request
        submitted meanwhile always finds a drain loop or starts one.
        """
        self._active -= 1
        self._draining -= drain
        if self._queue and self._may_drain():
            self._start_drain(loop)
        elif not self._active:
            self._idle.set()

    async def _drain_queue(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if self._timeout and len(self._queue) < self.max_batch_size:
                await self._wait_for_more(loop)
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
                    if item.future.done():
                        continue
                    if isinstance(row, BaseException):
                        item.future.set_exception(row)
                    else:
                        item.future.set_result(row)

    async def _wait_for_more(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until a whole batch is queued or the oldest request has waited the timeout."""
        wait = self._queue[0].enqueued + self._timeout - loop.time()
        if wait <= 0:
            return
        self._full.clear()
        with suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._full.wait()

    def _take(self, now: float) -> list[_Item]:
        """The oldest input and the next ones of its shape: only those can be stacked.

        Inputs of another shape (audio clips of other lengths) keep their places in the queue.
        Inputs that are not one array (a tensor model's named tensors) are grouped by the
        `stack` function instead.
        """
        batch: list[_Item] = []
        other_shapes: list[_Item] = []
        while self._queue and len(batch) < self.max_batch_size:
            item = self._queue.popleft()
            if item.future.done():  # cancelled by its caller
                continue
            if item.deadline is not None and item.deadline <= now:
                item.future.set_exception(
                    DeadlineExceeded("the request's deadline passed while it waited in the queue")
                )
                continue
            if batch and _shape(item.array) != _shape(batch[0].array):
                other_shapes.append(item)
                continue
            batch.append(item)
            if self._on_queue_wait is not None:
                self._on_queue_wait(now - item.enqueued)
        self._queue.extendleft(reversed(other_shapes))
        return batch

    def _run_stacked(self, arrays: list[Any]) -> Any:
        return self._run(self._stack(arrays))


def _shape(array: Any) -> tuple[int, ...] | None:
    """An input's shape, or None for inputs that are not one array."""
    return array.shape if isinstance(array, np.ndarray) else None
