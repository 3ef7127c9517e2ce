"""Remote models: their versions copied from object storage into a local cache folder.

The rest of the server loads local folders, so a model whose `base_path` is an s3:// URI
gets a folder in `--model_cache_dir` (its `ModelConfig.base_path`; the URI is its
`source`), and each scan first copies in the versions its policy wants. A version counts
once its servable.json is on the storage (the exporter uploads it last) and is copied into
a hidden folder, sizes checked and servable.json last, then renamed into place: neither a
half-uploaded nor a half-downloaded version is ever loaded. When the storage cannot be
read, the versions already there keep serving, the next tries back off, and the log says
so once per change of state.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyserving.core.repository import aspired_versions, scan
from pyserving.core.settings import ModelConfig, default_model_cache
from pyserving.errors import MissingExtra, PyservingError, StorageError
from pyserving.signature import hidden_folder, list_versions
from pyserving.storage import ObjectUri, is_uri, parse_uri
from pyserving.storage.s3 import RemoteVersion, S3Store

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # between tries while the storage fails
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)


def model_base(text: str, relative_to: Path) -> tuple[Path, str]:
    """A config's base path as (the folder versions load from, the URI they come from).

    A local path is relative to `relative_to` and has no URI; an s3:// URI gets a folder
    in the default cache (`in_cache` moves it). Raises ConfigError for another scheme.
    """
    if not is_uri(text):
        path = Path(text)
        return (path if path.is_absolute() else relative_to / path), ""
    uri = parse_uri(text)
    return mirror_folder(default_model_cache(), uri), str(uri)


def mirror_folder(cache_dir: Path, uri: ObjectUri) -> Path:
    """The local folder that holds the copies of the versions under `uri`."""
    return cache_dir.joinpath(uri.scheme, *uri.parts)


def in_cache(models: tuple[ModelConfig, ...], cache_dir: Path) -> tuple[ModelConfig, ...]:
    """`models`, each remote one's folder moved under `cache_dir`."""
    return tuple(
        dataclasses.replace(m, base_path=mirror_folder(cache_dir, parse_uri(m.source)))
        if m.source
        else m
        for m in models
    )


@dataclass
class _Health:
    """What the last tries at one remote model gave."""

    error: PyservingError | None = None
    failures: int = 0
    next_try: float = 0.0
    served: list[int] | None = None  # the versions the last good scan found


class Mirrors:
    """Copies remote models' aspired versions into their cache folders, as part of a scan.

    `scan` runs in the thread pool, one call at a time (the manager holds its lock); the
    other methods run on the event loop and only read what `scan` left.
    """

    def __init__(self, endpoint: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self._store = S3Store(endpoint)
        self._clock = clock
        self._health: dict[str, _Health] = {}

    def scan(self, models: tuple[ModelConfig, ...]) -> dict[str, list[int]]:
        """As `repository.scan`; a remote model's versions are those copied into its cache."""
        aspired = scan(tuple(m for m in models if not m.source))
        for config in models:
            if config.source:
                aspired[config.name] = self._sync(config)
        return aspired

    def check(self, config: ModelConfig) -> None:
        """Raise the last error of `config`'s storage if trying again will not help (the
        credentials, the bucket, boto3 missing), for a server that has nothing to serve."""
        health = self._health.get(config.source)
        error = health.error if health else None
        if isinstance(error, MissingExtra) or (
            isinstance(error, StorageError) and not error.transient
        ):
            raise error

    def _sync(self, config: ModelConfig) -> list[int]:
        health = self._health.setdefault(config.source, _Health())
        if self._clock() < health.next_try:
            return self._fallback(config, health)
        uri = parse_uri(config.source)
        try:
            remote = self._store.versions(uri)
            complete = sorted(v for v, found in remote.items() if found.complete)
            wanted = aspired_versions(complete, config.policy)
            for version in wanted:
                self._fetch(config, uri, remote[version])
        except (StorageError, MissingExtra) as exc:
            self._failed(config, health, exc)
            return self._fallback(config, health)
        except OSError as exc:  # the cache: full (may clear), or not writable (will not)
            error = StorageError(
                f"{config.base_path}: cannot keep copies of {uri} here: {exc.strerror or exc} "
                "(--model_cache_dir)",
                transient=exc.errno not in _UNWRITABLE,
            )
            self._failed(config, health, error)
            return self._fallback(config, health)
        if health.error is not None:
            log.info("%s: readable again; versions %s", uri, wanted or "none")
        health.error, health.failures, health.next_try = None, 0, 0.0
        health.served = wanted
        _prune(config.base_path, keep=set(wanted))
        return wanted

    def _failed(self, config: ModelConfig, health: _Health, exc: PyservingError) -> None:
        if health.error is None or str(health.error) != str(exc):
            transient = isinstance(exc, StorageError) and exc.transient
            log.warning(
                "%s%s",
                exc,
                "; the versions already loaded keep serving, trying again with backoff"
                if transient
                else "",
            )
        health.error = exc
        health.next_try = (
            self._clock() + BACKOFF_SECONDS[min(health.failures, len(BACKOFF_SECONDS) - 1)]
        )
        health.failures += 1

    def _fallback(self, config: ModelConfig, health: _Health) -> list[int]:
        """While the storage cannot be read: what the last good scan found, or (none yet,
        as on a start without network) what the cache holds."""
        if health.served is not None:
            on_disk = set(list_versions(config.base_path))
            return [v for v in health.served if v in on_disk]
        return aspired_versions(list_versions(config.base_path), config.policy)

    def _fetch(self, config: ModelConfig, uri: ObjectUri, version: RemoteVersion) -> None:
        """Copy `version` into the cache unless it is there already, with the same sizes."""
        final = config.base_path / str(version.version)
        if final.is_dir() and _sizes(final) == dict(version.files):
            return
        config.base_path.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        tmp = hidden_folder(config.base_path, "download")
        try:
            self._store.download(uri, version, tmp)
            tmp.chmod(0o755)
            if final.exists():  # changed on the storage since it was copied
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        size = sum(s for _, s in version.files)
        log.info(
            "%s: version %d copied into %s (%.1f MiB in %.1f s)",
            uri,
            version.version,
            final,
            size / 2**20,
            time.perf_counter() - started,
        )


def _sizes(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }


def _prune(folder: Path, keep: set[int]) -> None:
    """Remove the cached versions no longer aspired, but the newest of them: it may be the
    one still serving while an aspired one fails to load."""
    others = [v for v in list_versions(folder) if v not in keep]
    for version in others[:-1]:
        shutil.rmtree(folder / str(version), ignore_errors=True)
