"""Version labels in a real server: TF Serving's own client asks by label, and a config
edit moves a label under load from plain clients with no failed call."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from pyserving.client import Client
from pyserving.errors import RemoteError
from pyserving.web.app import create_app
from tests.onnx_models import publish, write_version_servable
from tests.processes import RunningProcess, free_port, run_cli, start_serve, wait_for

ROOT = Path(__file__).parent.parent.parent
CLIENT = ROOT / "tests" / "clients" / "tf_serving_labels.py"


def write_config(path: Path, base: Path, versions: tuple[int, ...], **labels: int) -> None:
    """A TF Serving models.config serving `versions` of model `m` with `labels`."""
    specific = " ".join(f"versions: {v}" for v in versions)
    entries = " ".join(f'version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items())
    path.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
        f'model_platform: "tensorflow" model_version_policy {{ specific {{ {specific} }} }} '
        f"{entries} }} }}\n"
    )


@dataclass(frozen=True)
class Labelled:
    server: RunningProcess
    grpc: str
    rest: str
    config: Path
    base: Path


@pytest.fixture
def labelled(tmp_path: Path) -> Iterator[Labelled]:
    """A server of versions 1 and 2 of `m` (each answers class `v<version>`; version 3 is on
    disk too), `stable` on 1 and `canary` on 2, its config file polled."""
    base = tmp_path / "m"
    for version in (1, 2, 3):
        publish(base, version, partial(write_version_servable, version=version))
    config = tmp_path / "models.config"
    write_config(config, base, (1, 2), stable=1, canary=2)
    rest_port = free_port()
    server = start_serve(
        tmp_path / "server.log",
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=0.2",
        "--rest_api_port",
        str(rest_port),
    )
    address = f"127.0.0.1:{server.match.group(1)}"
    yield Labelled(server, address, f"http://127.0.0.1:{rest_port}", config, base)
    server.stop()


def test_tf_serving_client_asks_by_label(labelled: Labelled) -> None:
    out = subprocess.run(
        [sys.executable, str(CLIENT), labelled.grpc, "m", "canary", "stable", "beta"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["canary"] == {
        "version": 2,
        "class": "v2",
        "metadata_version": 2,
        "status_versions": [2],
    }
    assert answer["stable"]["version"] == 1 and answer["stable"]["class"] == "v1"
    assert answer["beta"] == {
        "code": "NOT_FOUND",
        "details": "model 'm' has no version label 'beta' (labels: canary, stable)",
    }


def test_the_cli_and_the_client_take_labels(labelled: Labelled) -> None:
    classified = run_cli(
        "classify", "--server", labelled.grpc, "--label", "canary", "--feature", "x=1"
    )
    assert classified.returncode == 0, classified.stderr
    assert "version 2" in classified.stdout and "v2" in classified.stdout
    status = run_cli("status", "--server", labelled.grpc)
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
    assert lines["1"].endswith("labels: stable") and lines["2"].endswith("labels: canary")
    with Client(labelled.grpc) as client:
        assert client.labelled_version("", "canary") == ("m", 2)
        with pytest.raises(RemoteError, match=r"no version label 'beta' \(labels: canary, stable"):
            client.labelled_version("m", "beta")
        assert client.classify(features={"x": 1.0}, label="stable").model_version == 1


@dataclass
class Load:
    """Plain clients asking for `stable` until told to stop: what answered, what failed."""

    versions: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def grpc(self, address: str) -> None:
        with Client(address, timeout=10) as client:
            while not self.stop.wait(0.005):
                try:
                    result = client.classify(features={"x": 1.0}, label="stable")
                    self.versions.append(result.model_version)
                except RemoteError as exc:
                    self.failures.append(f"gRPC: {exc}")

    def rest(self, base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while not self.stop.wait(0.005):
                answer = http.post("/v1/models/m/labels/stable:predict", json={"instances": [[1]]})
                if answer.status_code != 200:
                    self.failures.append(f"REST {answer.status_code}: {answer.text}")
                    continue
                (row,) = answer.json()["predictions"]
                self.versions.append(row.index(max(row)))  # class i is v<i> here


def test_a_config_edit_moves_stable_under_load_with_no_failed_call(labelled: Labelled) -> None:
    load = Load()
    threads = [
        threading.Thread(target=load.grpc, args=(labelled.grpc,)),
        threading.Thread(target=load.grpc, args=(labelled.grpc,)),
        threading.Thread(target=load.rest, args=(labelled.rest,)),
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(load.versions) >= 30, 30, "answers before the edit")
        # stable moves to version 3, which loads, and version 1 leaves the policy.
        write_config(labelled.config, labelled.base, (2, 3), stable=3, canary=2)
        with Client(labelled.grpc) as client:

            def moved() -> bool:
                (model,) = client.model_status("m")
                states = {v.version: (v.state, v.labels) for v in model.versions}
                return states.get(1, ("END",))[0] == "END" and states.get(3) == (
                    "AVAILABLE",
                    ("stable",),
                )

            wait_for(moved, 60, "stable on version 3 and version 1 unloaded")
        answered = len(load.versions)
        wait_for(lambda: len(load.versions) >= answered + 30, 30, "answers after the edit")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(30)
    assert not load.failures, load.failures[:5]
    assert set(load.versions) == {1, 3}
    first_three = load.versions.index(3)
    assert 1 in load.versions[:first_three]
    assert "model m version labels: canary = 2, stable = 3" in labelled.server.output()


def test_a_label_naming_an_unavailable_version_is_refused_at_start(tmp_path: Path) -> None:
    base = tmp_path / "m"
    publish(base, 1, partial(write_version_servable, version=1))
    config = tmp_path / "models.config"
    write_config(config, base, (1,), stable=1, canary=2)
    refused = run_cli(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--rest_api_port",
        "0",
        f"--model_config_file={config}",
        timeout=120,
    )
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "version label 'canary' names version 2, which is not available" in output
    assert "Traceback" not in output

    allowed = start_serve(
        tmp_path / "allowed.log",
        f"--model_config_file={config}",
        "--allow_version_labels_for_unavailable_models",
    )
    try:
        with Client(f"127.0.0.1:{allowed.match.group(1)}") as client:
            assert client.classify(features={"x": 1.0}, label="stable").model_version == 1
            with pytest.raises(RemoteError) as caught:
                client.classify(features={"x": 1.0}, label="canary")
            assert caught.value.grpc_code == "NOT_FOUND"
            assert "has no version 2" in str(caught.value)
    finally:
        allowed.stop()


def test_the_web_app_offers_labels_beside_models(labelled: Labelled) -> None:
    with TestClient(create_app(labelled.grpc, models=["m"])) as web:
        html = web.get("/").text
        options = re.findall(r'<option value="([^"]+)" data-kind="(\w*)"[^>]*>([^<]+)<', html)
        assert options == [
            ("m", "features", "m"),
            ("m/canary", "features", "m · canary (version 2)"),
            ("m/stable", "features", "m · stable (version 1)"),
        ]
        models = web.get("/api/models").json()["models"]
        assert models[1] == {
            "name": "m",
            "kind": "features",
            "features": ["x"],
            "label": "canary",
            "version": 2,
        }
        answer = web.post("/api/classify", data={"model": "m/canary", "feature.x": "1"})
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["results"]
        assert result["model_version"] == 2
        page = web.post("/", data={"model": "m/stable", "feature.x": "1"}).text
        assert re.search(r'<option value="m/stable"[^>]* selected', page)
        unknown = web.post("/api/classify", data={"model": "m/beta", "feature.x": "1"}).json()
        assert "no version label 'beta' (labels: canary, stable)" in unknown["results"][0]["error"]
