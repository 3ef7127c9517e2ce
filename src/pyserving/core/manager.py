"""The manager: owns the lifecycle of every servable (scan, load, swap, drain, unload).

As in TensorFlow Serving's AspiredVersionsManager: each scan of the repository yields the
versions that *should* be served; the manager diffs that against what it has. New versions
are loaded and warmed up in the thread pool, then swapped in atomically; old ones stop
taking requests, finish those in flight, and are closed so their memory is released.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, KeysView
from concurrent.futures import Executor
from contextlib import contextmanager, suppress

from pyserving.core.labels import by_version, check, resolve
from pyserving.core.lifecycle import versions_to_load, versions_to_unload
from pyserving.core.mirror import Mirrors, in_cache
from pyserving.core.model_config import read_model_config
from pyserving.core.repository import fingerprint
from pyserving.core.servable import Servable, load_servable
from pyserving.core.settings import ModelConfig, Settings
from pyserving.errors import ConfigError, ModelNotFound, ModelNotReady, PyservingError
from pyserving.results import ModelStatus, State, VersionStatus

log = logging.getLogger(__name__)

MAX_ENDED_VERSIONS = 10  # END/FAILED entries kept in the status of each model


class ModelManager:
    """Loads and unloads versions as the repository and config change; routes requests.

    All methods run on the event loop; loading and closing run in `executor`. Requests
    take a servable with `use()`, which keeps that version alive until they finish.
    """

    def __init__(self, settings: Settings, executor: Executor) -> None:
        self._settings = settings
        self._executor = executor
        self._models = {m.name: m for m in in_cache(settings.models, settings.model_cache_dir)}
        self._default = settings.default_model or (
            settings.models[0].name if settings.models else ""
        )
        self._available: dict[str, dict[int, Servable]] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._failed: dict[tuple[str, int], tuple[tuple[str, int, int], ...]] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        # What the config file said when last read: a poll applies only an edit of it.
        self._file_config: tuple[tuple[ModelConfig, ...], str] | None = None
        self.changed = asyncio.Event()  # set after every change of state, for watchers
        # Version labels per model, replaced whole when a config's labels are applied.
        self._labels: dict[str, dict[str, int]] = {}
        # Each config applied is a generation; its labels apply in the first full scan of it.
        self._config_generation = 1
        self._labels_generation = 0
        self._label_error: ConfigError | None = None  # why the last config's labels were not
        self._mirrors = Mirrors(settings.s3_endpoint)  # copies s3:// models into the cache

    @property
    def default_model(self) -> str:
        return self._default

    def model_names(self) -> list[str]:
        return sorted(self._models)

    @property
    def configured(self) -> KeysView[str]:
        """The configured model names, as a live view: no copy on the request path."""
        return self._models.keys()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Read the config, load the default model, then keep polling in the background.

        Returns once the default model has an available version, so the server starts
        serving as soon as it can; other models keep loading after that.
        """
        if self._settings.model_config_file is not None:
            self._file_config = read_model_config(
                self._settings.model_config_file, self._settings.batching
            )
            self._file_config = self._in_cache(*self._file_config)
            self._apply_config(*self._file_config)
        await self.reconcile(only=self._default)
        poll = self._settings.file_system_poll_wait_seconds
        while not self._available.get(self._default):
            config = self._models[self._default]
            self._mirrors.check(config)  # wrong credentials: stop here, in one line
            base = config.source or config.base_path
            log.warning("waiting for a version of model %s under %s", self._default, base)
            await asyncio.sleep(poll or 2.0)
            await self.reconcile(only=self._default)
        await self.reconcile()
        if self._label_error is not None:
            raise self._label_error
        if poll > 0:
            self._tasks.append(asyncio.create_task(self._every(poll, self.reconcile)))
        config_poll = self._settings.model_config_file_poll_wait_seconds
        if self._settings.model_config_file is not None and config_poll > 0:
            self._tasks.append(asyncio.create_task(self._every(config_poll, self.reload_config)))

    async def stop(self) -> None:
        """Stop polling and unload everything (after in-flight requests finish)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._lock:
            for name in list(self._available):
                for servable in list(self._available[name].values()):
                    await self._unload(servable)

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception:
                log.exception("background %s failed; trying again later", action)

    async def reload_config(self) -> None:
        """Re-read the model config file; on error keep the last good config running."""
        path = self._settings.model_config_file
        assert path is not None
        try:
            models, default = read_model_config(path, self._settings.batching)
        except ConfigError as exc:
            log.error("%s; keeping the last good config", exc)
            return
        models, default = self._in_cache(models, default)
        # Only an edit of the file applies: a list set by `replace_config` stays until then.
        if (models, default) != self._file_config:
            self._file_config = (models, default)
            if {m.name: m for m in models} != self._models or default != self._default:
                self._apply_config(models, default)
                await self.reconcile()
                if self._label_error is not None:
                    log.error("%s; keeping the last good version labels", self._label_error)

    async def replace_config(self, models: tuple[ModelConfig, ...], default: str) -> None:
        """Serve `models` from now on (TF Serving's HandleReloadConfigRequest): load the new
        ones, unload those left out. Returns once the scan that applies it is done."""
        if not models:
            raise ConfigError("the new config lists no model")
        models, default = self._in_cache(models, default)
        self._apply_config(models, default or models[0].name)
        await self.reconcile()
        if self._label_error is not None:
            raise self._label_error

    def _in_cache(
        self, models: tuple[ModelConfig, ...], default: str
    ) -> tuple[tuple[ModelConfig, ...], str]:
        """`models` with each remote (s3://) one's copies under --model_cache_dir."""
        return in_cache(models, self._settings.model_cache_dir), default

    def _apply_config(self, models: tuple[ModelConfig, ...], default: str) -> None:
        added = {m.name for m in models} - set(self._models)
        removed = set(self._models) - {m.name for m in models}
        for name in sorted(added):
            log.info("config: model %s added", name)
        for name in sorted(removed):
            log.info("config: model %s removed", name)
        self._models = {m.name: m for m in models}
        self._default = default
        self._config_generation += 1

    async def reconcile(self, only: str | None = None) -> None:
        """One scan: load what should be served and is not, unload what should not be.

        The scan and the loads are I/O; what to load and unload is `lifecycle`'s decision,
        made from the sets gathered here.
        """
        async with self._lock:
            models = tuple(m for m in self._models.values() if only in (None, m.name))
            generation = self._config_generation
            loop = asyncio.get_running_loop()
            aspired = await loop.run_in_executor(self._executor, self._mirrors.scan, models)
            for config in models:
                wanted = set(aspired[config.name])
                loaded = set(self._available.get(config.name, {}))
                failed = self._failed_unchanged(config, wanted - loaded)
                for version in versions_to_load(wanted, loaded, failed):
                    await self._load(config, version)
            if only is None:
                self._move_labels(models, generation)  # before unloads: labels leave first
                for name in list(self._available):
                    served = self._models.get(name)  # None: the model left the config
                    loaded = set(self._available[name])
                    on_disk = {v for v in loaded if served and (served.base_path / str(v)).is_dir()}
                    wanted = set(aspired.get(name, [])) if served else set()
                    for version in versions_to_unload(wanted, loaded, on_disk):
                        await self._unload(self._available[name][version])

    def _move_labels(self, models: tuple[ModelConfig, ...], generation: int) -> None:
        """Apply the labels of `models` (the config of `generation`), all or none, once per
        config applied.

        Runs between a scan's loads and its unloads, so a label moves to a new version once
        that has loaded and before the one it left is drained. Leaves the reason in
        `_label_error` when a label names a version that is not available.
        """
        if generation == self._labels_generation:
            return
        self._labels_generation = generation
        self._label_error = None
        wanted = {m.name: dict(m.version_labels) for m in models if m.version_labels}
        allow = self._settings.allow_version_labels_for_unavailable_models
        try:
            for name, labels in wanted.items():
                current = self._labels.get(name, {})
                check(name, labels, current, self._available.get(name, {}).keys(), allow)
        except ConfigError as exc:
            self._label_error = exc
            return
        if wanted != self._labels:
            for name, labels in sorted(wanted.items()):
                if labels != self._labels.get(name):
                    log.info("model %s version labels: %s", name, _describe(labels))
            self._labels = wanted  # one assignment: a request sees the old labels or the new
            self.changed.set()
            self.changed = asyncio.Event()

    def _failed_unchanged(self, config: ModelConfig, versions: set[int]) -> set[int]:
        """Those of `versions` that failed and whose files are as they were then: a failed
        version is tried again only once its files change."""
        return {
            version
            for version in versions
            if (seen := self._failed.get((config.name, version))) is not None
            and seen == fingerprint(config.base_path / str(version))
        }

    async def _load(self, config: ModelConfig, version: int) -> None:
        path = config.base_path / str(version)
        self._set_status(config.name, VersionStatus(version, State.LOADING))
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        files = fingerprint(path)
        try:
            servable = await loop.run_in_executor(
                self._executor,
                load_servable,
                config.name,
                version,
                path,
                self._settings,
                self._executor,
                config,
            )
        except Exception as exc:
            reason = str(exc) if isinstance(exc, PyservingError) else f"{type(exc).__name__}: {exc}"
            self._failed[(config.name, version)] = files
            self._set_status(config.name, VersionStatus(version, State.FAILED, reason))
            log.error("model %s version %d failed to load: %s", config.name, version, reason)
            return
        self._failed.pop((config.name, version), None)
        versions = self._available.setdefault(config.name, {})
        previous = max(versions) if versions else None
        # One dict assignment: requests see either the old set or the new one.
        self._available[config.name] = {**versions, version: servable}
        self._set_status(
            config.name,
            VersionStatus(
                version,
                State.AVAILABLE,
                "",
                servable.engine_info.name,
                servable.precision,
                servable.signature.kind,
                servable.kind.describe(servable.signature).features,
                servable.engine_reason,
            ),
        )
        log.info(
            "model %s version %d loaded from %s in %.2f s%s",
            config.name,
            version,
            path,
            time.perf_counter() - started,
            f"; swapped in for version {previous}" if previous and previous < version else "",
        )

    async def _unload(self, servable: Servable) -> None:
        name, version = servable.name, servable.version
        versions = dict(self._available.get(name, {}))
        versions.pop(version, None)
        if versions:
            self._available[name] = versions
        else:
            self._available.pop(name, None)
        self._set_status(name, VersionStatus(version, State.UNLOADING))
        started = time.perf_counter()
        await servable.drain()
        servable.close()
        await asyncio.get_running_loop().run_in_executor(self._executor, _release_memory)
        self._set_status(name, VersionStatus(version, State.END))
        log.info(
            "model %s version %d unloaded (drained in %.2f s)",
            name,
            version,
            time.perf_counter() - started,
        )

    def _set_status(self, name: str, status: VersionStatus) -> None:
        versions = self._status.setdefault(name, {})
        versions[status.version] = status
        ended = [v for v, s in sorted(versions.items()) if s.state in (State.END, State.FAILED)]
        for old in ended[:-MAX_ENDED_VERSIONS]:
            del versions[old]
        self.changed.set()
        self.changed = asyncio.Event()

    # -- requests --------------------------------------------------------------------

    @contextmanager
    def use(self, name: str, version: int = 0, label: str = "") -> Iterator[Servable]:
        """The servable for `name` (empty: default) at `version` (0: newest), or the version
        `label` names, held in use.

        Raises ModelNotFound for an unknown model, version or label, ModelNotReady for a
        version that is loading or failed, or a model with no available version yet.
        """
        servable = self.get(name, version, label)
        with servable.in_use():
            yield servable

    def version_of(self, name: str, version: int = 0, label: str = "") -> int:
        """The version a request for `version` or `label` of `name` (empty: the default
        model) asks for; 0 is the newest. See `labels.resolve` for what it raises."""
        name = name or self._default
        if label and name not in self._models:
            self.get(name)  # raises ModelNotFound, naming the models there are
        return resolve(name, self._labels.get(name, {}), version, label)

    def labels(self, name: str) -> dict[str, int]:
        """The version labels of `name` now, label to version."""
        return dict(self._labels.get(name, {}))

    def get(self, name: str, version: int = 0, label: str = "") -> Servable:
        """Look up a servable without holding it (see `use`)."""
        version = self.version_of(name, version, label)
        name = name or self._default
        if name not in self._models:
            known = ", ".join(self.model_names()) or "none"
            raise ModelNotFound(f"model {name!r} is not served here (models: {known})")
        versions = self._available.get(name, {})
        if not version:
            if versions:
                return versions[max(versions)]
            raise ModelNotReady(f"model {name!r} has no available version yet{self._why(name)}")
        servable = versions.get(version)
        if servable is not None:
            return servable
        status = self._status.get(name, {}).get(version)
        if status and status.state == State.LOADING:
            raise ModelNotReady(f"model {name!r} version {version} is still loading")
        if status and status.state == State.FAILED:
            raise ModelNotReady(f"model {name!r} version {version} failed to load: {status.error}")
        known = ", ".join(str(v) for v in sorted(versions)) or "none"
        raise ModelNotFound(f"model {name!r} has no version {version} (available: {known})")

    def _why(self, name: str) -> str:
        states = self._status.get(name, {})
        loading = [v for v, s in states.items() if s.state == State.LOADING]
        if loading:
            return f" (loading version {max(loading)})"
        failed = [s for s in states.values() if s.state == State.FAILED]
        if failed:
            return f" (version {failed[-1].version} failed: {failed[-1].error})"
        config = self._models[name]
        return f" (no version found under {config.source or config.base_path})"

    def status(self, name: str = "") -> list[ModelStatus]:
        """Every version's state, per model (all models when `name` is empty)."""
        if name and name not in self._models and name not in self._status:
            raise ModelNotFound(f"model {name!r} is not served here")
        names = [name] if name else sorted(set(self._models) | set(self._available))
        return [
            ModelStatus(
                n,
                self._with_labels(n, tuple(s for _, s in sorted(self._status.get(n, {}).items()))),
            )
            for n in names
        ]

    def _with_labels(
        self, name: str, versions: tuple[VersionStatus, ...]
    ) -> tuple[VersionStatus, ...]:
        labelled = by_version(self._labels.get(name, {}))
        return tuple(
            dataclasses.replace(s, labels=labelled[s.version]) if s.version in labelled else s
            for s in versions
        )

    def available(self) -> dict[str, list[Servable]]:
        """Every available servable, per model."""
        return {name: list(v.values()) for name, v in self._available.items()}

    def available_versions(self, name: str) -> list[int]:
        """The available versions of `name`, oldest first."""
        return sorted(self._available.get(name, {}))

    def is_available(self, name: str = "") -> bool:
        """Whether `name` (empty: the default model) has an available version."""
        return bool(self._available.get(name or self._default))


def _describe(labels: dict[str, int]) -> str:
    return ", ".join(f"{label} = {version}" for label, version in sorted(labels.items()))


def _release_memory() -> None:
    """Ask glibc to hand freed heap back to the OS, so an unloaded model's RSS really goes."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name).malloc_trim(0)
