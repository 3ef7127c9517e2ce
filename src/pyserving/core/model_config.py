"""The model config file (`--model_config_file models.toml`): which models to serve.

TensorFlow Serving's `models.config` (text format) is read too: see `pyserving.core.tfs_config`.

default = "imagenet"            # optional; else the first model

[[models]]
name = "imagenet"
base_path = "models/imagenet"   # relative paths are relative to this file; or s3://BUCKET/PREFIX
version_policy = "latest"       # "latest", "all" or "specific"
num_versions = 1                # for latest
# versions = [1732460000]       # for specific

engine = "auto"                 # optional: onnxruntime, openvino or auto (the server's flag)
precision = "auto"              # optional: f32, bf16 or auto (the server's flag)
version_labels = { stable = 1732460000, canary = 1732470000 }  # optional, as TF Serving's

[models.batching]               # optional; keys left out take the server's flags
max_batch_size = 8
batch_timeout_micros = 0
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from pyserving.core.labels import parse_labels
from pyserving.core.mirror import model_base
from pyserving.core.settings import (
    ENGINE_CHOICES,
    PRECISION_CHOICES,
    BatchingSettings,
    ModelConfig,
    VersionPolicy,
)
from pyserving.core.tfs_config import is_text_format, read_models_config
from pyserving.errors import ConfigError

_MODEL_KEYS = {
    "name",
    "base_path",
    "version_policy",
    "num_versions",
    "versions",
    "batching",
    "engine",
    "precision",
    "version_labels",
}
_BATCHING_KEYS = set(BatchingSettings.__dataclass_fields__)


def read_model_config(
    path: Path, batching: BatchingSettings | None = None
) -> tuple[tuple[ModelConfig, ...], str]:
    """Parse `path` into model configs and the default model's name.

    A model's `[batching]` table overrides `batching` (the server's flags) key by key.

    A file in TensorFlow Serving's text format (`model_config_list { ... }`) is read as
    such (`pyserving.core.tfs_config`), detected by its content.

    Raises ConfigError naming the file and the line or key that is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    if is_text_format(text):
        return read_models_config(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"default", "models"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected 'default' and [[models]]")
    entries = doc.get("models")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: needs at least one [[models]] table")
    models = tuple(
        _model(entry, i, path, batching or BatchingSettings()) for i, entry in enumerate(entries)
    )
    names = [m.name for m in models]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: model {name!r} is listed twice")
    default = doc.get("default", names[0])
    if default not in names:
        raise ConfigError(f"{path}: default = {default!r} is not one of the models ({names})")
    return models, default


def _model(entry: Any, index: int, path: Path, batching: BatchingSettings) -> ModelConfig:
    where = f"{path}: models[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = sorted(set(entry) - _MODEL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected {sorted(_MODEL_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"{where}.name: expected a model name, got {name!r}")
    where = f"{path}: model {name!r}"
    base = entry.get("base_path")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{where}: base_path must be a folder path")
    base_path, source = model_base(base, path.parent)
    return ModelConfig(
        name,
        base_path,
        _policy(entry, where),
        _batching(entry, where, batching),
        engine=_choice(entry, "engine", ENGINE_CHOICES, where),
        precision=_choice(entry, "precision", PRECISION_CHOICES, where),
        version_labels=_version_labels(entry, where),
        source=source,
    )


def _version_labels(entry: dict[str, Any], where: str) -> tuple[tuple[str, int], ...]:
    table = entry.get("version_labels", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: version_labels must be a table of label = version")
    return parse_labels(table.items(), where)


def _choice(entry: dict[str, Any], key: str, choices: tuple[str, ...], where: str) -> str | None:
    value = entry.get(key)
    if value is not None and value not in choices:
        raise ConfigError(f"{where}: {key} {value!r} is not one of {', '.join(choices)}")
    return value


def _policy(entry: dict[str, Any], where: str) -> VersionPolicy:
    kind = entry.get("version_policy", "latest")
    if kind == "latest":
        n = entry.get("num_versions", 1)
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}: num_versions must be a positive integer, got {n!r}")
        return VersionPolicy("latest", num_versions=n)
    if kind == "all":
        return VersionPolicy("all")
    if kind == "specific":
        versions = entry.get("versions")
        if (
            not isinstance(versions, list)
            or not versions
            or not all(isinstance(v, int) and v > 0 for v in versions)
        ):
            raise ConfigError(f"{where}: versions must be a list of positive integers")
        return VersionPolicy("specific", versions=tuple(sorted(set(versions))))
    raise ConfigError(f"{where}: version_policy {kind!r} is not one of 'latest', 'all', 'specific'")


def _batching(
    entry: dict[str, Any], where: str, defaults: BatchingSettings
) -> BatchingSettings | None:
    table = entry.get("batching")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: batching must be a table")
    for key, value in table.items():
        if key not in _BATCHING_KEYS:
            raise ConfigError(
                f"{where}: unknown batching key {key!r}; expected {sorted(_BATCHING_KEYS)}"
            )
        least = 0 if key in ("batch_timeout_micros", "num_batch_threads") else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            kind = "a non-negative" if least == 0 else "a positive"
            raise ConfigError(f"{where}: batching.{key} must be {kind} integer")
    return dataclasses.replace(defaults, **table)
