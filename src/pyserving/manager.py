"""The manager: owns which servables are loaded and hands them to requests."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from pyserving.errors import ModelNotFound, ServableError
from pyserving.repository import list_versions
from pyserving.servable import Servable, load_servable
from pyserving.settings import ModelConfig, Settings

log = logging.getLogger(__name__)


class ModelManager:
    """Loads the newest version of each configured model and looks servables up.

    Used from the event loop; loading runs in the executor.
    """

    def __init__(self, settings: Settings, executor: Executor) -> None:
        self._settings = settings
        self._executor = executor
        self._models: dict[str, dict[int, Servable]] = {}

    @property
    def default_model(self) -> str:
        return self._settings.default_model

    def model_names(self) -> list[str]:
        return sorted(self._models)

    async def start(self) -> None:
        """Load every configured model's newest version. Raises ServableError on failure."""
        for config in self._settings.models:
            await self._load_latest(config)

    async def _load_latest(self, config: ModelConfig) -> None:
        versions = list_versions(config.base_path)
        if not versions:
            raise ServableError(
                f"{config.base_path}: no version of model {config.name!r} found (expected a "
                "folder named by a positive integer); export one with `pyserving export`"
            )
        version = versions[-1]
        loop = asyncio.get_running_loop()
        servable = await loop.run_in_executor(
            self._executor,
            load_servable,
            config.name,
            version,
            config.base_path / str(version),
            self._settings,
            self._executor,
        )
        self._models.setdefault(config.name, {})[version] = servable

    def get(self, name: str, version: int = 0) -> Servable:
        """The servable for `name` (empty: the default model) at `version` (0: the newest).

        Raises ModelNotFound for an unknown model or version.
        """
        name = name or self.default_model
        versions = self._models.get(name)
        if not versions:
            known = ", ".join(self.model_names()) or "none"
            raise ModelNotFound(f"model {name!r} is not served here (models: {known})")
        if not version:
            return versions[max(versions)]
        servable = versions.get(version)
        if servable is None:
            known = ", ".join(str(v) for v in sorted(versions))
            raise ModelNotFound(f"model {name!r} has no version {version} (available: {known})")
        return servable
