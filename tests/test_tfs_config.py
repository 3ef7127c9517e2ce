"""TF Serving's text-format config files, read as they are."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pyserving.cli.main import build_parser
from pyserving.cli.serve import serve_settings
from pyserving.core.model_config import read_model_config
from pyserving.core.settings import BatchingSettings, VersionPolicy
from pyserving.core.tfs_config import (
    is_text_format,
    read_batching_parameters,
    read_monitoring_config,
)
from pyserving.errors import ConfigError

CONFIG = """
# two models, as tensorflow_model_server reads them
model_config_list {
  config {
    name: 'imagenet'
    base_path: '/models/imagenet'
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 3 versions: 1 } }
    version_labels { key: 'stable' value: 1 }
  }
  config {
    name: "iris"
    base_path: "iris"
    model_platform: "onnx"
    model_version_policy { all {} }
    some_future_field: 7
  }
  config { name: "text" base_path: "text" model_version_policy { latest { num_versions: 2 } } }
}
"""


def test_a_models_config_is_read_beside_toml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "models.config"
    path.write_text(CONFIG)
    with caplog.at_level(logging.WARNING):
        models, default = read_model_config(path)
    assert default == "imagenet"
    assert [(m.name, m.base_path, m.policy) for m in models] == [
        ("imagenet", Path("/models/imagenet"), VersionPolicy("specific", versions=(1, 3))),
        ("iris", tmp_path / "iris", VersionPolicy("all")),
        ("text", tmp_path / "text", VersionPolicy("latest", num_versions=2)),
    ]
    assert "tensorflow.serving.ModelConfig.some_future_field is not used" in caplog.text
    assert models[0].version_labels == (("stable", 1),)
    assert "version_labels" not in caplog.text
    assert not is_text_format('default = "x"\n[[models]]\nname = "model_config_list"\n')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "a" base_path: "a" model_platform: "pytorch" } }',
            "model_platform 'pytorch' is not served",
        ),
        ('model_config_list { config { name: "a" } }', "base_path"),
        ("model_config_list { }", "no config entry"),
        (
            'model_config_list { config { name: "a" base_path: "a" } config { name: "a" '
            'base_path: "b" } }',
            "listed twice",
        ),
        ("model_config_list { config { name: ", "not valid TensorFlow Serving text format"),
    ],
)
def test_a_wrong_models_config_is_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_model_config(path)


def test_batching_parameters_and_monitoring(tmp_path: Path) -> None:
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 500 }\n")
    read = read_batching_parameters(batching, BatchingSettings(max_enqueued_batches=3))
    assert read == BatchingSettings(32, 500, 3, 0)
    batching.write_text("max_batch_size { value: 0 }\n")
    with pytest.raises(ConfigError, match="max_batch_size must be at least 1"):
        read_batching_parameters(batching, BatchingSettings())
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/tfs/metrics" }')
    assert read_monitoring_config(monitoring) == "/tfs/metrics"
    monitoring.write_text("prometheus_config { enable: false }")
    assert read_monitoring_config(monitoring) is None


def test_tensorflow_model_server_flags(tmp_path: Path) -> None:
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 16 }\n")
    common = ["serve", "--model_base_path", str(tmp_path), f"--batching_parameters_file={batching}"]
    args = build_parser().parse_args([*common, "--enable_batching=true"])
    assert serve_settings(args).batching.max_batch_size == 16
    args = build_parser().parse_args([*common, "--enable_batching=false"])
    assert serve_settings(args).batching == BatchingSettings()  # TF Serving ignores it too
    args = build_parser().parse_args([*common, "--tensorflow_intra_op_parallelism=3"])
    assert serve_settings(args).intra_op_threads == 3
    args = build_parser().parse_args([*common, "--ssl_config_file=ssl.txt"])
    with pytest.raises(ConfigError, match="--ssl_config_file is not supported: give --ssl_cert"):
        serve_settings(args)
