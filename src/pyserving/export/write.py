"""Writing a version atomically: a hidden folder, verified, then renamed into place.

Every exporter builds its files in `write_servable`'s temporary folder; the server ignores
folders whose name is not a positive integer, so a half-written export is never loaded.
"""

from __future__ import annotations

import datetime
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pyserving
from pyserving.errors import ExportError, MissingExtra
from pyserving.kinds import load_signature
from pyserving.signature import hidden_folder, list_versions


class Progress:
    """Prints one line per export step, numbered, with the time since the export began."""

    def __init__(self, steps: int, out: TextIO | None = None) -> None:
        self.steps = steps
        self._done = 0
        self._out = out or sys.stderr
        self._start = time.perf_counter()

    def step(self, message: str) -> None:
        self._done += 1
        elapsed = time.perf_counter() - self._start
        print(
            f"[{self._done}/{self.steps}] {message} ({elapsed:.1f} s)", file=self._out, flush=True
        )


def missing_extra(module: str, extra: str) -> MissingExtra:
    """The error for a framework that is not installed, naming the extra that installs it.

    Framework modules raise it from their imports: `except ImportError as exc: raise
    missing_extra(exc.name or "torch", "torch") from exc`.
    """
    return MissingExtra(module.split(".")[0], extra)


def provenance(framework: str, **details: Any) -> dict[str, Any]:
    """The `source` section of servable.json: framework, details, export time, pyserving."""
    return {
        "framework": framework,
        **details,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "pyserving_version": pyserving.__version__,
    }


def next_version(model_dir: Path) -> int:
    """The Unix time now, or one more than the newest version if that is not older."""
    existing = list_versions(model_dir)
    now = int(time.time())
    return max(now, existing[-1] + 1) if existing else now


def write_servable(repository: Path, name: str, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_folder)`, validate what it wrote, and rename it into place.

    `write` must create model.onnx, servable.json and labels.txt, verifying the model as it
    goes. Returns the new version folder. On any failure the temporary folder is removed
    and nothing appears in the repository; one left by an export killed outright is removed
    by the next export of the model on this host.
    """
    if not name or "/" in name or name.startswith("."):
        raise ExportError(f"invalid model name {name!r}: use letters, digits, '-' or '_'")
    model_dir = repository / name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = hidden_folder(model_dir, "export")
    except OSError as exc:
        raise ExportError(f"cannot write into {model_dir}: {exc.strerror or exc}") from exc
    try:
        write(tmp)
        load_signature(tmp)
        _fsync_files(tmp)
        # mkdtemp made it private (0700); servers may run as another user than the exporter.
        tmp.chmod(0o755)
        while True:
            final = model_dir / str(next_version(model_dir))
            try:
                os.rename(tmp, final)
                return final
            except OSError:
                if not final.exists():
                    raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in _NO_ROOM:
            raise ExportError(
                f"no room to write the version under {model_dir} ({exc.strerror}): free some "
                "space and export again; nothing was written"
            ) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# A full disk, a quota, or a file size limit (RLIMIT_FSIZE).
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _fsync_files(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as f:
            os.fsync(f.fileno())
