"""The cores the server sizes itself for: its CPU set, capped by a cgroup CPU limit.

The layouts are written as files, as the kernel shows them: cgroup v2 (a container with
its own cgroup namespace, and a host path with a limit on a parent), cgroup v1 inside a
container (the host's path, its folder mounted as the root; what podman does on this
machine) and the hybrid layout. The real test puts `pyserving serve` in a cgroup with a
CPU limit, where this machine lets root make one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyserving.cores import cgroup_cpu_limit, cpu_set_size
from tests.processes import start_server

V2_ROOT_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def layout(tmp_path: Path, mountinfo: str, membership: str, files: dict[str, str]) -> Path:
    """A file tree holding proc/self/{mountinfo,cgroup} and `files` (paths from the root)."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(mountinfo)
    (tmp_path / "proc/self/cgroup").write_text(membership)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return tmp_path


def test_a_v2_container_limit_is_read_from_its_root_cgroup(tmp_path: Path) -> None:
    root = layout(tmp_path, V2_ROOT_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000"})
    limit = cgroup_cpu_limit(root)
    assert limit is not None
    assert (limit.quota, limit.period, limit.cores) == (150000, 100000, 1.5)
    assert limit.folder == root / "sys/fs/cgroup"


def test_the_lowest_limit_on_the_way_up_counts(tmp_path: Path) -> None:
    files = {
        "sys/fs/cgroup/kubepods/cpu.max": "400000 100000",
        "sys/fs/cgroup/kubepods/pod1/cpu.max": "200000 100000",
        "sys/fs/cgroup/kubepods/pod1/server/cpu.max": "max 100000",
    }
    root = layout(tmp_path, V2_ROOT_MOUNT, "0::/kubepods/pod1/server\n", files)
    limit = cgroup_cpu_limit(root)
    assert limit is not None
    assert limit.cores == 2.0
    assert limit.folder == root / "sys/fs/cgroup/kubepods/pod1"


def test_max_everywhere_is_no_limit(tmp_path: Path) -> None:
    files = {"sys/fs/cgroup/cpu.max": "max 100000", "sys/fs/cgroup/a/cpu.max": "max 100000"}
    assert cgroup_cpu_limit(layout(tmp_path, V2_ROOT_MOUNT, "0::/a\n", files)) is None


def test_a_v1_container_reads_the_folder_mounted_for_its_host_path(tmp_path: Path) -> None:
    host_path = "/libpod_parent/libpod-426f"
    mountinfo = (
        f"94 93 0:29 {host_path} /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu\n"
        f"95 93 0:30 {host_path} /sys/fs/cgroup/cpuacct ro,nosuid - cgroup cgroup rw,cpuacct\n"
    )
    membership = f"2:cpuacct:{host_path}\n1:cpu:{host_path}\n0::{host_path}\n"
    files = {
        "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "250000",
        "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
    }
    limit = cgroup_cpu_limit(layout(tmp_path, mountinfo, membership, files))
    assert limit is not None
    assert limit.cores == 2.5


def test_hybrid_takes_v1s_cpu_limit_when_v2_has_no_cpu_controller(tmp_path: Path) -> None:
    mountinfo = (
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "33 31 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "34 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    membership = "4:memory:/job\n1:cpu,cpuacct:/job\n0::/job\n"
    files = {
        "sys/fs/cgroup/unified/job/cgroup.procs": "1",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
        "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us": "50000",
        "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us": "100000",
        "sys/fs/cgroup/memory/job/cpu.cfs_quota_us": "10000",  # not the cpu controller's
    }
    limit = cgroup_cpu_limit(layout(tmp_path, mountinfo, membership, files))
    assert limit is not None
    assert limit.cores == 0.5


def test_an_escaped_mount_point_is_found(tmp_path: Path) -> None:
    mountinfo = "30 23 0:26 / /sys/fs/my\\040cgroups rw - cgroup2 cgroup2 rw\n"
    files = {"sys/fs/my cgroups/cpu.max": "300000 100000"}
    limit = cgroup_cpu_limit(layout(tmp_path, mountinfo, "0::/\n", files))
    assert limit is not None
    assert limit.cores == 3.0


@pytest.mark.parametrize(
    ("membership", "cpu_max"),
    [
        ("0::/\n", "banana 100000"),  # not understood
        ("0::/\n", "0 100000"),  # not a limit
        ("0::/\n", ""),  # empty
        ("0::/elsewhere\n", None),  # no such folder
        ("1:cpu:/x\n", "150000 100000"),  # v1 membership, but only a v2 mount
    ],
)
def test_what_cannot_be_read_is_no_limit(
    tmp_path: Path, membership: str, cpu_max: str | None
) -> None:
    files = {} if cpu_max is None else {"sys/fs/cgroup/cpu.max": cpu_max}
    assert cgroup_cpu_limit(layout(tmp_path, V2_ROOT_MOUNT, membership, files)) is None


def test_no_proc_files_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None


@contextlib.contextmanager
def cgroup_with_cpu_limit(quota: int, period: int = 100000) -> Iterator[Path]:
    """A real cgroup v1 cpu (or v2) folder with that limit; skip where root cannot make one."""
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    subtree = v2 / "cgroup.subtree_control"  # v2: the controllers children may use
    if (v1 / "cpu.cfs_quota_us").exists():
        folder, files = v1 / f"pyserving-test-{os.getpid()}", {"cpu.cfs_quota_us": str(quota)}
    elif subtree.exists() and "cpu" in subtree.read_text().split():
        folder, files = v2 / f"pyserving-test-{os.getpid()}", {"cpu.max": f"{quota} {period}"}
    else:
        pytest.skip("no cgroup cpu controller this process may use (cgroup v1 or delegated v2)")
    try:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot make a cgroup with a CPU limit here: {exc}")
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            folder.rmdir()  # once its processes are gone


def test_a_server_under_a_cpu_limit_sizes_itself_for_the_limit(
    imagenet_repository: Path, tmp_path: Path
) -> None:
    cpus = cpu_set_size()
    if cpus < 2:
        pytest.skip("one core in the CPU set: no limit can be lower")
    # Half a core under the CPU set, so the limit rounds down to one core fewer.
    with cgroup_with_cpu_limit(quota=(cpus - 1) * 100000 + 50000) as cgroup:
        procs = cgroup / "cgroup.procs"
        enter = ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]
        server = start_server(
            "imagenet", imagenet_repository / "imagenet", tmp_path / "server.log", prefix=enter
        )
        try:
            log = server.output()
            assert f"sized for {cpus - 1} core(s): the cgroup CPU limit of {cpus - 0.5:g}" in log
            assert f"of {cpus} in the CPU set" in log
            # One batch thread per core, two lone calls per core: from the limit, not the set.
            assert f"{cpus - 1} batch thread(s)" in log
            assert f"{2 * (cpus - 1)} call(s) at once with lone inputs" in log
        finally:
            assert server.stop() == 0
