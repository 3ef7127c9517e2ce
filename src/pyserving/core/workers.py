"""The one thread pool that decodes images and runs inference, at a lower CPU priority.

The event loop does the network work: reading requests, turning away what does not fit in
the queue, answering health checks. When decoding and inference keep every core busy, the
loop's thread still has to get a core quickly, or every reply waits for the scheduler.
Raising the worker threads' nice value (Linux sets it per thread; raising it needs no
privileges) lets the loop run first. ONNX Runtime's own threads are started from these
workers when a model loads, so they inherit it.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from pyserving.core.settings import Settings

log = logging.getLogger(__name__)


def worker_pool(settings: Settings) -> ThreadPoolExecutor:
    """The decode and inference pool, `settings.pool_size` threads."""
    return ThreadPoolExecutor(
        settings.pool_size,
        thread_name_prefix="pyserving",
        initializer=lower_priority,
        initargs=(settings.worker_niceness,),
    )


def lower_priority(niceness: int) -> None:
    """Add `niceness` to the calling thread's nice value (where the OS allows it)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()  # on Linux, PRIO_PROCESS with a thread id: one thread
    try:
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + niceness)
    except OSError as exc:
        log.warning("cannot lower the priority of worker threads: %s", exc)
