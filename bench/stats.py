"""One measured row: how many requests, how fast, how long each took, how many failed,
and how much CPU time each cost (which other work on the machine hardly changes).
"""

from __future__ import annotations

import os
import resource
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Measurement:
    """`ok` requests succeeded in `seconds`; `latencies` (seconds) are the successful ones,
    `error_latencies` the failed ones'.

    `cpu_seconds` is the CPU time the serving side spent (the server process, or this
    process for the in-process baseline); `client_cpu_seconds` the load generator's.
    """

    ok: int
    errors: int
    seconds: float
    latencies: tuple[float, ...]
    error_kinds: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float | None = None
    client_cpu_seconds: float | None = None
    error_latencies: tuple[float, ...] = ()

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(np.array(self.latencies), q)) * 1000

    def error_percentile_ms(self, q: float) -> float:
        if not self.error_latencies:
            return float("nan")
        return float(np.percentile(np.array(self.error_latencies), q)) * 1000

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def cores_busy(self) -> float | None:
        """CPU time of both sides over the wall time: how much of the machine was used."""
        if self.cpu_seconds is None or self.seconds <= 0:
            return None
        return (self.cpu_seconds + (self.client_cpu_seconds or 0.0)) / self.seconds

    def cpu_ms_per_request(self, seconds: float | None) -> float | None:
        done = self.ok + self.errors
        return None if seconds is None or not done else seconds / done * 1000


def own_cpu_seconds() -> float:
    """CPU time (user + system) this process has used, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process `pid` has used, from /proc; None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
