"""Object storage: s3:// URIs, and listing, downloading and publishing versions on a real
S3-compatible server (moto's, tests/s3_server.py) that checks credentials."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from pyserving.errors import ConfigError, MissingExtra, StorageError
from pyserving.storage import ObjectUri, is_uri, parse_uri, safe_relative
from pyserving.storage.s3 import S3Store, endpoint_url
from tests.onnx_models import write_version_servable
from tests.s3_server import S3Server

_buckets = itertools.count()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"storage-{next(_buckets)}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return S3Store()


def test_uris() -> None:
    assert parse_uri("s3://models-1/a/b/") == ObjectUri("s3", "models-1", "a/b")
    assert str(parse_uri("s3://models-1")) == "s3://models-1"
    assert parse_uri("S3://models-1/x").child("7") == ObjectUri("s3", "models-1", "x/7")
    assert is_uri("gs://b/m") and not is_uri("models/imagenet") and not is_uri("/abs/s3:x")
    for text in ("gs://bucket/m", "az://container/m", "https://host/m", "file:///tmp/m"):
        with pytest.raises(ConfigError, match="s3://BUCKET/PREFIX") as caught:
            parse_uri(text)
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="not an S3 bucket name"):
        parse_uri("s3://Bad_Bucket/m")
    with pytest.raises(ConfigError, match="'..'"):
        parse_uri("s3://models-1/a/../b")
    assert safe_relative("a/b.txt") and not safe_relative("../x") and not safe_relative("a//b")


def test_endpoint_from_the_flag_then_aws_then_tf_serving() -> None:
    env = {"AWS_ENDPOINT_URL": "http://aws:1", "S3_ENDPOINT": "minio:9000"}
    assert endpoint_url("http://flag:2", env) == "http://flag:2"
    assert endpoint_url("", env) == "http://aws:1"
    assert endpoint_url("", {**env, "AWS_ENDPOINT_URL_S3": "http://s3:3"}) == "http://s3:3"
    # TF Serving's S3_ENDPOINT is a host, HTTPS unless S3_USE_HTTPS=0.
    assert endpoint_url("", {"S3_ENDPOINT": "minio:9000"}) == "https://minio:9000"
    assert endpoint_url("", {"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}) == (
        "http://minio:9000"
    )
    assert endpoint_url("", {}) is None


def test_publish_lists_and_downloads_a_version(
    store: S3Store, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    local = write_version_servable(tmp_path / "local" / "5", 5)
    model = parse_uri(f"s3://{bucket}/models/m")
    assert store.publish(local, model) == model.child("5")
    # The next one is numbered after the newest there, whatever its folder says.
    assert store.publish(local, model) == model.child("6")
    found = store.versions(model)
    assert sorted(found) == [5, 6] and all(v.complete for v in found.values())
    sizes = {p.name: p.stat().st_size for p in local.iterdir()}
    assert dict(found[5].files) == sizes

    copy = tmp_path / "copy"
    copy.mkdir()
    store.download(model, found[5], copy)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == {
        p.name: p.read_bytes() for p in local.iterdir()
    }


def test_a_version_without_servable_json_is_not_complete(
    store: S3Store, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    local = write_version_servable(tmp_path / "1", 1)
    client = s3.client()
    for path in local.iterdir():
        if path.name != "servable.json":
            client.put_object(Bucket=bucket, Key=f"m/3/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket=bucket, Key="m/3/", Body=b"")  # a console's folder marker
    client.put_object(Bucket=bucket, Key="m/.tmp/servable.json", Body=b"{}")
    found = store.versions(parse_uri(f"s3://{bucket}/m"))
    assert list(found) == [3] and not found[3].complete


def test_wrong_credentials_are_one_line_that_shows_no_secret(
    s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, secret = s3.key
    model = parse_uri(f"s3://{bucket}/m")
    for wrong in ((key_id, "not-the-secret"), ("AKIANOSUCHKEY0000000", secret)):
        for name, value in s3.env(wrong).items():
            monkeypatch.setenv(name, value)
        with pytest.raises(StorageError) as caught:
            S3Store().versions(model)
        message = str(caught.value)
        assert "access denied" in message and "AWS_ACCESS_KEY_ID" in message, message
        assert not caught.value.transient
        assert "\n" not in message and wrong[1] not in message and secret not in message


def test_missing_bucket_and_unreachable_server(
    store: S3Store, s3: S3Server, tmp_path: Path
) -> None:
    with pytest.raises(StorageError, match="there is no bucket 'no-such-bucket'") as caught:
        store.versions(parse_uri("s3://no-such-bucket/m"))
    assert not caught.value.transient
    unreachable = S3Store(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(StorageError, match="cannot reach http://127.0.0.1") as caught:
        unreachable.versions(parse_uri("s3://storage-x/m"))
    assert caught.value.transient and "\n" not in str(caught.value)


def _closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    from tests.processes import free_port

    return free_port()


def test_without_boto3_an_s3_path_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError
    with pytest.raises(MissingExtra) as caught:
        S3Store("http://127.0.0.1:9").versions(parse_uri("s3://storage-x/m"))
    assert str(caught.value) == (
        "an s3:// repository needs boto3, which is not installed; install it with: "
        "pip install 'pyserving[s3]'"
    )


def test_a_failed_publish_leaves_nothing_behind(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user who may write anything but a servable.json: the upload fails at its last file.
    key = s3.add_user(
        [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*/servable.json",
            },
        ]
    )
    for name, value in s3.env(key).items():
        monkeypatch.setenv(name, value)
    local = write_version_servable(tmp_path / "1", 1)
    model = parse_uri(f"s3://{bucket}/m")
    with pytest.raises(StorageError, match="uploading servable.json: access denied"):
        S3Store().publish(local, model)
    assert "Contents" not in s3.client().list_objects_v2(Bucket=bucket)
