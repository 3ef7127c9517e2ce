"""Where OpenVINO keeps compiled models: a folder per model file, least recently used first
to go once the cache is over its size.

OpenVINO names a compiled blob after a hash it does not expose and never deletes one, so a
server that loads version after version would fill the disk. Each model file's blobs go in
a folder of their own; loading touches the folder, and the folders untouched longest are
removed while the cache is over `MAX_BYTES`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

MAX_BYTES = 2 << 30  # a few hundred large models' worth


def model_cache(cache: str, model: Path) -> str | None:
    """The folder for `model`'s compiled blobs under `cache` (created and marked as just
    used), or None when `cache` is empty or cannot be written (one warning per folder)."""
    if not cache or not _writable(cache):
        return None
    stat = model.stat()
    # OpenVINO's own key includes the model's path, so this one may too: a rewritten file
    # (new size or time) gets a new folder, and its old one ages out.
    key = f"{model.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    folder = Path(cache) / hashlib.sha256(key).hexdigest()[:24]
    try:
        folder.mkdir(exist_ok=True)
        folder.touch()  # the folder's time is when it was last used
    except OSError:
        return None
    _prune(Path(cache), keep=folder)
    return str(folder)


@functools.cache
def _writable(cache: str) -> bool:
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError as exc:
        log.warning(
            "compiled-model cache %s is not writable (%s); loading models without it",
            cache,
            exc.strerror or exc,
        )
        return False
    return True


def _prune(cache: Path, keep: Path) -> None:
    """Remove the least recently used model folders while the cache is over MAX_BYTES."""
    folders = []
    for entry in cache.iterdir():
        try:
            if entry.is_dir():
                size = sum(f.stat().st_size for f in entry.iterdir())
                folders.append((entry.stat().st_mtime, size, entry))
        except OSError:
            continue  # another process removed it meanwhile
    total = sum(size for _, size, _ in folders)
    for _, size, folder in sorted(folders):
        if total <= MAX_BYTES:
            break
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
