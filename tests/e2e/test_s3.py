"""Models on S3: exported to, and served from, a real S3-compatible server on loopback.

The server is moto's (tests/s3_server.py), checking every request's credentials. The
pyserving processes are real and reach it as they would reach AWS: credentials and the
endpoint from AWS's environment variables.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest

from pyserving.client import AsyncClient, Client
from pyserving.errors import RemoteError
from pyserving.storage import parse_uri
from pyserving.storage.s3 import S3Store
from tests.onnx_models import linear_model, write_version_servable
from tests.processes import RunningProcess, run_cli, start_serve, wait_for
from tests.s3_server import S3Server

POLL = "0.2"
_buckets = itertools.count()


@pytest.fixture(autouse=True)
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process reaches the S3 server as the pyserving processes do."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"e2e-{next(_buckets)}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def servers() -> Iterator[list[RunningProcess]]:
    started: list[RunningProcess] = []
    yield started
    for server in started:
        server.stop()


def serve(
    servers: list[RunningProcess],
    s3: S3Server,
    uri: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
) -> tuple[Client, RunningProcess]:
    log = tmp_path / f"server-{len(servers)}.log"
    args = ("--model_name", "m", "--model_base_path", uri, "--file_system_poll_wait_seconds", POLL)
    server = start_serve(log, *args, env=s3.env() if env is None else env)
    servers.append(server)
    return Client(f"127.0.0.1:{server.match.group(1)}", timeout=10), server


def cli_env(s3: S3Server, key: tuple[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a command run to its end, reaching `s3` with `key`."""
    return {**os.environ, **s3.env(key)}


def publish(s3: S3Server, uri: str, version: int, tmp_path: Path) -> int:
    """Upload a version the exporter's way (servable.json last); the number it got."""
    local = write_version_servable(tmp_path / "local" / str(version), version)
    store = S3Store(s3.url)
    return int(store.publish(local, parse_uri(uri)).prefix.rpartition("/")[2])


def served(client: Client) -> dict[int, str]:
    (status,) = client.model_status("m")
    return {v.version: v.state for v in status.versions}


@dataclass
class Load:
    """Clients classifying in a loop until stopped, keeping every answer and failure."""

    address: str
    answers: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, tasks: int = 3, max_seconds: float = 60) -> None:
        deadline = time.monotonic() + max_seconds
        async with AsyncClient(self.address, timeout=10) as client:

            async def worker() -> None:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    try:
                        result = await client.classify(features={"x": 1.0})
                        self.answers.append(result.model_version)
                    except RemoteError as exc:
                        self.failures.append(f"{exc.grpc_code}: {exc}")

            await asyncio.gather(*(worker() for _ in range(tasks)))

    async def until(self, condition: object, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if callable(condition) and condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"not seen in {within} s: {what}")


async def test_export_to_s3_serve_from_it_and_swap_under_load(
    s3: S3Server, bucket: str, servers: list[RunningProcess], tmp_path: Path
) -> None:
    model = tmp_path / "lin.onnx"
    onnx.save(linear_model(np.array([[1.0, -1.0]], dtype=np.float32)), str(model))
    repository = f"s3://{bucket}/models"
    export = ("export", "onnx", str(model), "--features", "x", "--labels", "up,down")
    done = await asyncio.to_thread(
        run_cli, *export, "--repository", repository, "--name", "m", env=cli_env(s3)
    )
    assert done.returncode == 0, done.stderr
    (uri,) = done.stdout.split()
    assert uri.startswith(f"{repository}/m/")
    first = int(uri.rpartition("/")[2])
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"models/m/{first}/{f}" for f in ("model.onnx", "servable.json", "labels.txt")} <= keys

    client, _ = serve(servers, s3, f"{repository}/m", tmp_path)
    result = client.classify(features={"x": 1.0})
    assert (result.model_version, result.predictions[0].name) == (first, "up")

    load = Load(client.address)
    running = asyncio.create_task(load.run())
    await load.until(lambda: len(load.answers) >= 50, 20, "50 answers")
    second = await asyncio.to_thread(publish, s3, f"{repository}/m", first + 1, tmp_path)
    await load.until(lambda: second in load.answers, 30, f"version {second} answering")
    seen = len(load.answers)
    await load.until(lambda: len(load.answers) >= seen + 50, 20, "50 more answers")
    load.stop.set()
    await running
    assert load.failures == []
    assert set(load.answers[-20:]) == {second}
    assert served(client) == {first: "END", second: "AVAILABLE"}


def test_a_version_uploaded_object_by_object_is_loaded_only_once_whole(
    s3: S3Server,
    bucket: str,
    servers: list[RunningProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"s3://{bucket}/models/m"
    first = publish(s3, uri, 1, tmp_path)
    # The endpoint as TF Serving users give it: S3_ENDPOINT, a host, with S3_USE_HTTPS=0.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    tf_serving = {"S3_ENDPOINT": f"127.0.0.1:{s3.port}", "S3_USE_HTTPS": "0"}
    client, _ = serve(servers, s3, uri, tmp_path, env=tf_serving)
    assert served(client) == {first: "AVAILABLE"}

    local = write_version_servable(tmp_path / "local" / "2", 2)
    for name in ("model.onnx", "labels.txt"):  # everything but servable.json
        body = (local / name).read_bytes()
        s3.client().put_object(Bucket=bucket, Key=f"models/m/2/{name}", Body=body)
        # The server lists the storage at least twice while the version is half-uploaded.
        listings = s3.listings + 3
        wait_for(lambda: s3.listings >= listings, 20, "the server to list the bucket")  # noqa: B023
        assert served(client) == {first: "AVAILABLE"}
        assert client.classify(features={"x": 1.0}).model_version == first

    s3.client().put_object(
        Bucket=bucket, Key="models/m/2/servable.json", Body=(local / "servable.json").read_bytes()
    )
    wait_for(lambda: served(client).get(2) == "AVAILABLE", 20, "version 2 to load")
    assert client.classify(features={"x": 1.0}).model_version == 2


def test_requests_are_answered_through_an_outage_and_the_poll_recovers(
    s3: S3Server, bucket: str, servers: list[RunningProcess], tmp_path: Path
) -> None:
    uri = f"s3://{bucket}/models/m"
    publish(s3, uri, 1, tmp_path)
    client, server = serve(servers, s3, uri, tmp_path)
    s3.stop()
    try:
        wait_for(lambda: "cannot reach" in server.output(), 30, "the outage to be logged")
        for _ in range(50):
            assert client.classify(features={"x": 1.0}).model_version == 1
        listings = s3.listings
    finally:
        s3.start()
    assert s3.listings == listings  # nothing reached it while it was down
    publish(s3, uri, 2, tmp_path)
    wait_for(lambda: served(client).get(2) == "AVAILABLE", 60, "version 2 after the outage")
    assert client.classify(features={"x": 1.0}).model_version == 2
    log = server.output()
    assert log.count("cannot reach") == 1, log  # once per change of state, not every poll
    assert "readable again" in log


def test_wrong_credentials_are_one_line(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/models/m"
    publish(s3, uri, 1, tmp_path)
    key_id, secret = s3.key
    wrong = cli_env(s3, (key_id, "a-wrong-secret"))
    args = ("serve", "--host", "127.0.0.1", "--port", "0", "--rest_api_port", "0")
    done = run_cli(
        *args, "--model_base_path", uri, "--file_system_poll_wait_seconds", POLL, env=wrong
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "access denied" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert secret not in done.stderr + done.stdout
    assert "a-wrong-secret" not in done.stderr + done.stdout

    model = tmp_path / "lin.onnx"
    onnx.save(linear_model(np.array([[1.0, -1.0]], dtype=np.float32)), str(model))
    export = ("export", "onnx", str(model), "--features", "x", "--labels", "up,down")
    done = run_cli(*export, "--repository", f"s3://{bucket}/models", env=wrong)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert "access denied" in done.stderr and "Traceback" not in done.stderr


def test_other_schemes_are_refused_in_one_line(tmp_path: Path) -> None:
    done = run_cli("serve", "--model_base_path", "gs://bucket/models/m")
    assert done.returncode == 1
    assert done.stderr == (
        "error: gs://bucket/models/m: gs:// repositories are not supported; a repository is a "
        "local folder or s3://BUCKET/PREFIX (S3 or an S3-compatible server)\n"
    )
