"""How many cores this process may use: its CPU set, capped by its cgroup's CPU limit.

A container sees every core of its node, but a CPU limit (`docker run --cpus`, a
Kubernetes `limits.cpu`) lets it run only so many cores' worth of time per period; threads
beyond that are throttled, not parallel. The limit is read from cgroup v2's `cpu.max` and
cgroup v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us`, for this process's cgroup and each
of its parents up to the mount, through `/proc/self/mountinfo` (inside a container the
cgroup's path in `/proc/self/cgroup` is the host's, but its folder is mounted as the root).
A fractional limit rounds down, to at least 1, as Go's automaxprocs does: a thread for
every started core would be throttled in each period.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["CpuLimit", "cgroup_cpu_limit", "cpu_set_size", "describe_cores", "usable_cores"]


@dataclass(frozen=True)
class CpuLimit:
    """A cgroup's CPU limit: `quota` microseconds of CPU time in every `period`."""

    quota: int
    period: int
    folder: Path  # the cgroup folder that sets it

    @property
    def cores(self) -> float:
        return self.quota / self.period


@dataclass(frozen=True)
class _Mount:
    root: str  # the cgroup path mounted there ("/" on the host)
    point: Path
    version: int  # 1 or 2


def cpu_set_size() -> int:
    """The cores in this process's CPU affinity set (all of them where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@cache
def _sizing() -> tuple[int, int, CpuLimit | None]:
    """The usable cores, the CPU set's size, and the limit that lowers it (None: none)."""
    cpus, limit = cpu_set_size(), cgroup_cpu_limit()
    if limit is None or math.floor(limit.cores) >= cpus:
        return cpus, cpus, None
    return max(1, math.floor(limit.cores)), cpus, limit


def usable_cores() -> int:
    """The cores this process may use: its CPU set, or fewer under a cgroup CPU limit."""
    return _sizing()[0]


def describe_cores() -> str:
    """One line on how many cores the server sizes itself for, and why."""
    cores, cpus, limit = _sizing()
    if limit is None:
        return f"{cores} core(s): the CPU set, with no lower cgroup CPU limit"
    return (
        f"{cores} core(s): the cgroup CPU limit of {limit.cores:g} "
        f"({limit.quota} µs per {limit.period} µs, {limit.folder}), rounded down, of "
        f"{cpus} in the CPU set"
    )


def cgroup_cpu_limit(root: Path = Path("/")) -> CpuLimit | None:
    """The lowest CPU limit on this process's cgroup and its parents, or None for none.

    `root` is where `proc/self/…` and the mount points are found (the file system's root
    but in tests). Files that are missing, unreadable or not understood count as no limit.
    """
    try:
        mountinfo = (root / "proc/self/mountinfo").read_text(errors="replace")
        membership = (root / "proc/self/cgroup").read_text(errors="replace")
    except OSError:
        return None
    paths = _cgroup_paths(membership)
    limits = []
    for mount in _cpu_mounts(mountinfo, root):
        path = paths.get(mount.version)
        if path is not None:
            limits += _limits_up_from(mount, path)
    return min(limits, key=lambda limit: limit.cores, default=None)


def _cgroup_paths(membership: str) -> dict[int, str]:
    """The process's cgroup path for v2 (the `0::` line) and for v1's cpu controller."""
    paths: dict[int, str] = {}
    for line in membership.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers:
            paths[2] = path
        elif "cpu" in controllers.split(","):
            paths[1] = path
    return paths


def _cpu_mounts(mountinfo: str, root: Path) -> list[_Mount]:
    """The cgroup v2 mounts and the v1 mounts of the cpu controller, from mountinfo."""
    mounts = []
    for line in mountinfo.splitlines():
        mine, _, theirs = line.partition(" - ")
        fields, other = mine.split(), theirs.split()
        if len(fields) < 5 or len(other) < 3:
            continue
        point = root / _unescape(fields[4]).lstrip("/")
        if other[0] == "cgroup2":
            mounts.append(_Mount(_unescape(fields[3]), point, 2))
        elif other[0] == "cgroup" and "cpu" in other[2].split(","):
            mounts.append(_Mount(_unescape(fields[3]), point, 1))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _limits_up_from(mount: _Mount, path: str) -> list[CpuLimit]:
    """The limits set on the cgroup at `path` and on its parents inside `mount`."""
    base = mount.root.rstrip("/")
    if path != base and not path.startswith(base + "/"):
        return []  # the process's cgroup is not under this mount
    folder = mount.point / path[len(base) :].lstrip("/")
    limits = []
    while True:
        limit = _read_v2(folder) if mount.version == 2 else _read_v1(folder)
        if limit is not None:
            limits.append(limit)
        if folder == mount.point or mount.point not in folder.parents:
            return limits
        folder = folder.parent


def _read_v2(folder: Path) -> CpuLimit | None:
    """`cpu.max`: "max 100000" (none) or "150000 100000"."""
    words = _read(folder / "cpu.max").split()
    if len(words) != 2 or not all(word.isdigit() for word in words):
        return None
    return _limit(int(words[0]), int(words[1]), folder)


def _read_v1(folder: Path) -> CpuLimit | None:
    """`cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`."""
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if not quota.isdigit() or not period.isdigit():  # "-1", or missing
        return None
    return _limit(int(quota), int(period), folder)


def _limit(quota: int, period: int, folder: Path) -> CpuLimit | None:
    return CpuLimit(quota, period, folder) if quota > 0 and period > 0 else None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""
