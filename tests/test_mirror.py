"""Remote models copied into the cache (core/mirror.py), against a real S3-compatible server
that checks credentials (moto's, tests/s3_server.py)."""

from __future__ import annotations

import itertools
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pyserving.core.manager import ModelManager
from pyserving.core.mirror import Mirrors, in_cache, model_base
from pyserving.core.model_config import read_model_config
from pyserving.core.settings import ModelConfig, Settings, VersionPolicy, default_model_cache
from pyserving.errors import ConfigError, MissingExtra, StorageError
from pyserving.signature import list_versions
from tests.onnx_models import write_version_servable
from tests.s3_server import S3Server

_buckets = itertools.count()


class Clock:
    """A clock the test moves: backoff is decided by it, not by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def remote(s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelConfig:
    """A model `m` at s3://BUCKET/models/m (empty), its cache under tmp_path."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"mirror-{next(_buckets)}"
    s3.client().create_bucket(Bucket=bucket)
    base, source = model_base(f"s3://{bucket}/models/m", Path())
    (config,) = in_cache((ModelConfig("m", base, source=source),), tmp_path / "cache")
    return config


def upload(
    s3: S3Server, config: ModelConfig, version: int, tmp_path: Path, last: bool = True
) -> None:
    """Put version `version` object by object, servable.json last (left out: `last=False`)."""
    local = write_version_servable(tmp_path / "versions" / str(version), version)
    bucket, _, prefix = config.source.removeprefix("s3://").partition("/")
    for path in sorted(local.iterdir(), key=lambda p: p.name == "servable.json"):
        if path.name != "servable.json" or last:
            s3.client().put_object(
                Bucket=bucket, Key=f"{prefix}/{version}/{path.name}", Body=path.read_bytes()
            )


def test_config_paths() -> None:
    assert model_base("models/m", Path("/etc/conf")) == (Path("/etc/conf/models/m"), "")
    base, source = model_base("s3://bucket-1/models/m/", Path("/etc"))
    assert source == "s3://bucket-1/models/m" and base.parts[-4:] == (
        "s3",
        "bucket-1",
        "models",
        "m",
    )
    (moved,) = in_cache((ModelConfig("m", base, source=source),), Path("/cache"))
    assert moved.base_path == Path("/cache/s3/bucket-1/models/m")
    with pytest.raises(ConfigError, match="gs:// repositories are not supported"):
        model_base("gs://bucket-1/m", Path())


def test_complete_versions_are_copied_and_the_policy_applies(
    s3: S3Server, remote: ModelConfig, tmp_path: Path
) -> None:
    mirrors = Mirrors()
    assert mirrors.scan((remote,)) == {"m": []}
    upload(s3, remote, 1, tmp_path)
    upload(s3, remote, 2, tmp_path, last=False)  # half-uploaded: never copied
    assert mirrors.scan((remote,)) == {"m": [1]}
    assert list_versions(remote.base_path) == [1]
    assert not (remote.base_path / "2").exists()
    assert [p.name for p in remote.base_path.iterdir()] == ["1"]  # no download left behind

    upload(s3, remote, 2, tmp_path)
    assert mirrors.scan((remote,)) == {"m": [2]}
    # Version 1 stays in the cache (it may be the one serving while 2 fails to load) ...
    assert list_versions(remote.base_path) == [1, 2]
    upload(s3, remote, 3, tmp_path)
    assert mirrors.scan((remote,)) == {"m": [3]}
    assert list_versions(remote.base_path) == [2, 3]  # ... until a newer one is aspired
    both = ModelConfig("m", remote.base_path, VersionPolicy("all"), source=remote.source)
    assert mirrors.scan((both,)) == {"m": [1, 2, 3]}


def test_an_outage_keeps_the_versions_and_backs_off(
    s3: S3Server, remote: ModelConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    mirrors = Mirrors(clock=clock)
    upload(s3, remote, 1, tmp_path)
    assert mirrors.scan((remote,)) == {"m": [1]}
    s3.stop()
    try:
        with caplog.at_level(logging.WARNING, "pyserving.core.mirror"):
            for _ in range(3):  # failing, then within the backoff: no try at all
                assert mirrors.scan((remote,)) == {"m": [1]}
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings  # once per change of state
        assert "cannot reach" in warnings[0].getMessage()
        assert "keep serving" in warnings[0].getMessage()
        listings = s3.listings
        clock.now += 1.5  # past the first backoff: one more try, which fails quietly
        assert mirrors.scan((remote,)) == {"m": [1]}
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        s3.start()
    upload(s3, remote, 2, tmp_path)
    assert mirrors.scan((remote,)) == {"m": [1]}  # still backing off (2 s)
    assert s3.listings == listings
    clock.now += 2.5
    with caplog.at_level(logging.INFO, "pyserving.core.mirror"):
        assert mirrors.scan((remote,)) == {"m": [2]}
    assert any("readable again" in r.getMessage() for r in caplog.records)


def test_a_start_without_the_storage_serves_the_cache(
    s3: S3Server, remote: ModelConfig, tmp_path: Path
) -> None:
    upload(s3, remote, 1, tmp_path)
    Mirrors().scan((remote,))
    s3.stop()
    try:
        assert Mirrors().scan((remote,)) == {"m": [1]}  # a new process, S3 down
    finally:
        s3.start()


def test_wrong_credentials_stop_a_server_with_nothing_to_serve(
    s3: S3Server, remote: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    mirrors = Mirrors()
    mirrors.check(remote)  # nothing known yet
    assert mirrors.scan((remote,)) == {"m": []}
    with pytest.raises(StorageError, match="access denied") as caught:
        mirrors.check(remote)
    assert "wrong" not in str(caught.value)


def test_without_boto3_a_remote_model_fails_the_start_naming_the_extra(
    remote: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError
    mirrors = Mirrors()
    assert mirrors.scan((remote,)) == {"m": []}
    with pytest.raises(MissingExtra, match=r"pip install 'pyserving\[s3\]'"):
        mirrors.check(remote)


def test_config_files_take_s3_base_paths(tmp_path: Path) -> None:
    toml = tmp_path / "models.toml"
    toml.write_text('[[models]]\nname = "m"\nbase_path = "s3://bucket-1/models/m"\n')
    text = tmp_path / "models.config"
    text.write_text(
        'model_config_list { config { name: "m" base_path: "s3://bucket-1/models/m" '
        'model_platform: "tensorflow" } }'
    )
    for path in (toml, text):
        (model,), _ = read_model_config(path)
        assert model.source == "s3://bucket-1/models/m"
        assert model.base_path == default_model_cache() / "s3" / "bucket-1" / "models" / "m"
    text.write_text('model_config_list { config { name: "m" base_path: "gs://bucket-1/m" } }')
    with pytest.raises(ConfigError, match="gs:// repositories are not supported"):
        read_model_config(text)


async def test_the_manager_serves_a_remote_model_from_its_cache_dir(
    s3: S3Server, remote: ModelConfig, tmp_path: Path
) -> None:
    upload(s3, remote, 1, tmp_path)
    base, source = model_base(remote.source, Path())  # as the flag gives it: default cache
    settings = Settings(
        models=(ModelConfig("m", base, source=source),),
        file_system_poll_wait_seconds=0,
        model_cache_dir=tmp_path / "flag",
    )
    with ThreadPoolExecutor(2) as executor:
        manager = ModelManager(settings, executor)
        await manager.start()
        try:
            assert manager.get("m").version == 1
            assert list_versions(in_cache(settings.models, tmp_path / "flag")[0].base_path) == [1]
            upload(s3, remote, 2, tmp_path)
            await manager.reconcile()
            assert manager.get("m").version == 2
        finally:
            await manager.stop()


def test_a_cache_that_cannot_be_written_is_one_line(
    s3: S3Server, remote: ModelConfig, tmp_path: Path
) -> None:
    upload(s3, remote, 1, tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    (config,) = in_cache((remote,), blocked)
    mirrors = Mirrors()
    assert mirrors.scan((config,)) == {"m": []}
    with pytest.raises(StorageError, match="cannot keep copies of s3://") as caught:
        mirrors.check(config)
    assert "--model_cache_dir" in str(caught.value) and "\n" not in str(caught.value)
