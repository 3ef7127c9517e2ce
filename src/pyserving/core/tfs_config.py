"""TensorFlow Serving's configuration files, read as they are (protobuf text format).

- `--model_config_file models.config`: `model_config_list { config { name, base_path,
  model_platform, model_version_policy { latest | all | specific }, version_labels } } }`;
- `--batching_parameters_file`: `max_batch_size { value: 32 }`, `batch_timeout_micros`,
  `max_enqueued_batches`, `num_batch_threads`;
- `--monitoring_config_file`: `prometheus_config { enable: true, path: "..." }`.

Fields pyserving has no use for (`logging_config`, `allowed_batch_sizes`, ...) are warned
about and skipped, not fatal, so a file written for TF Serving loads as it is.
A `model_platform` other than `tensorflow` or `onnx` is refused: the versions must be
pyserving servables (ONNX) whatever the file says.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import Message

from pyserving._proto import tensorflow_serving_config_pb2 as pb
from pyserving.core.labels import parse_labels
from pyserving.core.mirror import model_base
from pyserving.core.settings import BatchingSettings, ModelConfig, VersionPolicy
from pyserving.errors import ConfigError

log = logging.getLogger(__name__)

PLATFORMS = ("tensorflow", "onnx", "")  # "": TF Serving's default, tensorflow
_TEXT_FORMAT = re.compile(r"^\s*(model_config_list|custom_model_config)\s*[:{]")
_COMMENT = re.compile(r"#[^\n]*")


def is_text_format(text: str) -> bool:
    """Whether a model config file is TF Serving's text format rather than TOML."""
    return bool(_TEXT_FORMAT.match(_COMMENT.sub("", text)))


def parse(text: str, message: Message, where: str) -> Message:
    """Parse protobuf text format into `message`, warning about fields it does not have.

    Raises ConfigError naming `where` and the line for anything else that is wrong.
    """
    parser = _Parser(allow_unknown_field=True)
    try:
        parser.ParseLines(text.split("\n"), message)
    except text_format.ParseError as exc:
        raise ConfigError(f"{where}: not valid TensorFlow Serving text format: {exc}") from exc
    for field in parser.unknown:
        log.warning("%s: field %s is not used by pyserving; ignored", where, field)
    return message


# text_format's one hook that sees the unknown fields it skips (a private class).
class _Parser(text_format._Parser):
    """text_format's parser, remembering the unknown fields it skips."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.unknown: list[str] = []

    def _SkipFieldContents(
        self, tokenizer: Any, field_name: str, immediate_message_type: str
    ) -> None:
        self.unknown.append(f"{immediate_message_type}.{field_name}")
        super()._SkipFieldContents(tokenizer, field_name, immediate_message_type)  # type: ignore[misc]


def read_models_config(path: Path, text: str) -> tuple[tuple[ModelConfig, ...], str]:
    """The models of a TF Serving `models.config` and the default (the first)."""
    config = parse(text, pb.ModelServerConfig(), str(path))
    assert isinstance(config, pb.ModelServerConfig)
    return models_of(config, path.parent, str(path))


def models_of(
    config: pb.ModelServerConfig, base: Path, where: str
) -> tuple[tuple[ModelConfig, ...], str]:
    """The models a `ModelServerConfig` lists (relative base paths are relative to `base`).

    Each model is batched as the server's flags (or batching parameters file) say.
    """
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{where}: needs a model_config_list (custom_model_config is not read)")
    entries = config.model_config_list.config
    if not entries:
        raise ConfigError(f"{where}: model_config_list has no config entry")
    models = tuple(_model(entry, i, base, where) for i, entry in enumerate(entries))
    names = [m.name for m in models]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{where}: model {name!r} is listed twice")
    return models, names[0]


def _model(entry: pb.ModelConfig, index: int, base: Path, where: str) -> ModelConfig:
    if not entry.name or "/" in entry.name:
        raise ConfigError(
            f"{where}: config[{index}].name: expected a model name, got {entry.name!r}"
        )
    where = f"{where}: model {entry.name!r}"
    if entry.model_platform not in PLATFORMS:
        raise ConfigError(
            f"{where}: model_platform {entry.model_platform!r} is not served by pyserving; "
            'it serves ONNX servables (model_platform "tensorflow" or "onnx"): export the '
            "model with `pyserving export` first"
        )
    if not entry.base_path:
        raise ConfigError(f"{where}: base_path must be a folder path")
    base_path, source = model_base(entry.base_path, base)
    labels = parse_labels(entry.version_labels.items(), where)
    return ModelConfig(
        entry.name, base_path, _policy(entry, where), version_labels=labels, source=source
    )


def _policy(entry: pb.ModelConfig, where: str) -> VersionPolicy:
    policy = entry.model_version_policy
    which = policy.WhichOneof("policy_choice") if entry.HasField("model_version_policy") else None
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        versions = tuple(sorted(set(policy.specific.versions)))
        if not versions or versions[0] < 1:
            raise ConfigError(f"{where}: specific versions must be positive integers")
        return VersionPolicy("specific", versions=versions)
    n = policy.latest.num_versions if which == "latest" else 1
    return VersionPolicy("latest", num_versions=n or 1)


def read_batching_parameters(path: Path, defaults: BatchingSettings) -> BatchingSettings:
    """`--batching_parameters_file`: the values it sets over `defaults` (the flags)."""
    params = parse(_read(path), pb.BatchingParameters(), str(path))
    assert isinstance(params, pb.BatchingParameters)
    changes: dict[str, int] = {}
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches"):
        if params.HasField(field):
            changes[field] = getattr(params, field).value
    if params.HasField("num_batch_threads"):
        changes["num_batch_threads"] = params.num_batch_threads.value
    for field, value in changes.items():
        least = 0 if field in ("batch_timeout_micros", "num_batch_threads") else 1
        if value < least:
            raise ConfigError(f"{path}: {field} must be at least {least}, got {value}")
    for field in ("thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs"):
        value = getattr(params, field)
        if params.HasField(field) if field == "thread_pool_name" else value:
            log.warning("%s: %s is not used by pyserving; ignored", path, field)
    return dataclasses.replace(defaults, **changes)


def read_monitoring_config(path: Path) -> str | None:
    """`--monitoring_config_file`: the path to serve Prometheus metrics at too, if enabled."""
    config = parse(_read(path), pb.MonitoringConfig(), str(path))
    assert isinstance(config, pb.MonitoringConfig)
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    route = prometheus.path or "/monitoring/prometheus/metrics"  # TF Serving's default
    if not route.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with /, got {route!r}")
    return route


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
