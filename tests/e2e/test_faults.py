"""Faults: exports killed or out of room leave nothing half-written; served versions survive
their files changing under them; a read-only repository serves."""

from __future__ import annotations

import contextlib
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

from pyserving.client import Client
from pyserving.signature import MODEL_FILE, list_versions
from tests.onnx_models import linear_model, png, publish, write_image_servable
from tests.processes import start_server, wait_for

STEPS = 5  # of `pyserving export onnx` on a features model
# Runs the real CLI, killing itself with SIGKILL right after progress step K is printed, or
# (K = 0) just before the version is renamed into place.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pyserving.export import write
    from pyserving.cli.main import main
    at = int(sys.argv.pop(1))
    step = write.Progress.step
    def kill_after(self, message):
        step(self, message)
        if self._done == at:
            os.kill(os.getpid(), signal.SIGKILL)
    write.Progress.step = kill_after
    if at == 0:
        fsync = write._fsync_files
        def kill_before_rename(folder):
            fsync(folder)
            os.kill(os.getpid(), signal.SIGKILL)
        write._fsync_files = kill_before_rename
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture(scope="module")
def big_linear(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A features model of 2 MB of weights: big enough to overflow a small disk."""
    path = tmp_path_factory.mktemp("faults") / "linear.onnx"
    weights = np.random.default_rng(0).normal(size=(512, 1000)).astype(np.float32)
    onnx.save(linear_model(weights), path)
    return path


def export_args(model: Path, repository: Path) -> list[str]:
    features = ",".join(f"f{i}" for i in range(512))
    labels = ",".join(f"c{i}" for i in range(1000))
    return [
        "export",
        "onnx",
        str(model),
        "--features",
        features,
        "--labels",
        labels,
        "--repository",
        str(repository),
        "--name",
        "linear",
    ]


def run_export(
    args: list[str], kill_at: int | None = None, fsize: int | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["-c", KILLER, str(kill_at)] if kill_at is not None else ["-m", "pyserving"]

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, *prefix, *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 0])
def test_an_export_killed_at_any_step_leaves_no_version(
    big_linear: Path, tmp_path: Path, kill_at: int
) -> None:
    repository = tmp_path / "models"
    killed = run_export(export_args(big_linear, repository), kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stderr.count("] ") == (kill_at or STEPS - 1)  # the steps it got through
    assert list_versions(repository / "linear") == []
    model_dir = repository / "linear"
    left = [p.name for p in model_dir.iterdir()] if model_dir.exists() else []
    assert all(name.startswith(".export-") for name in left), left  # hidden: never loaded
    if kill_at == 0:
        assert len(left) == 1  # complete and fsynced, but never renamed into place
    done = run_export(export_args(big_linear, repository))
    assert done.returncode == 0, done.stderr
    assert len(list_versions(repository / "linear")) == 1
    # The next export removed the folder the killed one left.
    assert [p.name for p in (repository / "linear").iterdir()] == [
        done.stdout.split("/")[-1].strip()
    ]


def test_a_file_size_limit_fails_the_export_clearly(big_linear: Path, tmp_path: Path) -> None:
    repository = tmp_path / "models"
    failed = run_export(export_args(big_linear, repository), fsize=1 << 20)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    assert "no room to write the version" in failed.stderr
    assert "nothing was written" in failed.stderr
    assert list((repository / "linear").iterdir()) == []


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path`, or a skip where this machine may not mount one."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    done = subprocess.run(
        [mount or "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs privileges this machine does not give: {done.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_fails_the_export_clearly(big_linear: Path, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small", "1m") as small:
        failed = run_export(export_args(big_linear, small))
        assert failed.returncode == 1, failed.stderr
        assert "Traceback" not in failed.stderr
        assert "no room to write the version" in failed.stderr
        assert "No space left on device" in failed.stderr
        assert list((small / "linear").iterdir()) == []


def test_a_read_only_repository_serves(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "4m") as repository:
        publish(repository / "colours", 1, write_image_servable)
        subprocess.run(["mount", "-o", "remount,ro", str(repository)], check=True)
        with pytest.raises(OSError):
            (repository / "colours" / "probe").write_text("x")
        server = start_server("colours", repository / "colours", tmp_path / "server.log")
        try:
            with Client(f"127.0.0.1:{server.match.group(1)}") as client:
                assert client.classify(png((0, 0, 250))).predictions[0].name == "blue"
        finally:
            assert server.stop() == 0, server.output()


def test_a_served_version_survives_its_files_changing_until_a_new_one_is_complete(
    tmp_path: Path,
) -> None:
    base = tmp_path / "colours"
    publish(base, 1, write_image_servable)
    server = start_server(
        "colours", base, tmp_path / "server.log", "--file_system_poll_wait_seconds", "0.1"
    )
    try:
        with Client(f"127.0.0.1:{server.match.group(1)}") as client:

            def states() -> dict[int, str]:
                (model,) = client.model_status("colours")
                return {v.version: v.state for v in model.versions}

            (base / "1" / MODEL_FILE).unlink()  # deleted while it serves
            (base / "1" / "labels.txt").write_text("garbage\n")  # and another replaced
            # A broken version 2: once it has FAILED, the scans have seen version 1's files.
            publish(base, 2, write_image_servable)
            (base / "2" / MODEL_FILE).write_bytes(b"not an onnx model")
            wait_for(lambda: states().get(2) == "FAILED", 20, "version 2 FAILED")
            assert states()[1] == "AVAILABLE"
            answer = client.classify(png((250, 0, 0)))
            assert (answer.model_version, answer.predictions[0].name) == (1, "red")
            publish(base, 3, write_image_servable)  # complete: it takes over
            wait_for(lambda: states().get(1) == "END", 20, "version 1 unloaded")
            answer = client.classify(png((250, 0, 0)))
            assert (answer.model_version, answer.predictions[0].name) == (3, "red")
    finally:
        assert server.stop() == 0, server.output()
