"""The images, built from the working tree with `deploy/images.sh` and run with podman.

Built once per session by conftest.py (podman's layer cache makes a rebuild with unchanged
inputs quick). Containers are reached only through ports published on 127.0.0.1. Where
podman is missing or cannot run containers, every test here is skipped with the reason
(`make podman` installs it from Debian).
"""

from __future__ import annotations

import base64
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.cores import cpu_set_size
from tests.containers import (
    ROOT,
    ULIMITS,
    Container,
    image_size,
    missing_reason,
    network,
    podman,
    running,
)
from tests.photos import jpeg
from tests.processes import wait_for
from tests.seed_client import seed_classify

MB = 1_000_000
# Upper bounds: the 650 MB for the server; room above what the others weigh today
# (on Debian's bookworm base: server 617 MB, web 407 MB, export 1359 MB).
SIZE_LIMITS = {"server": 650 * MB, "web": 450 * MB, "export": 1600 * MB}
SERVE = [
    "serve",
    "--model_name",
    "imagenet",
    "--model_base_path",
    "/models/imagenet",
    "--port",
    "9999",
    "--rest_api_port",
    "8501",
]

_REASON = missing_reason()
pytestmark = pytest.mark.skipif(bool(_REASON), reason=_REASON or "podman runs here")


@pytest.fixture(scope="module")
def server(images: dict[str, str]) -> Iterator[Container]:
    """The server image as its HEALTHCHECK and the manifests run it: read-only, its own user."""
    with running(images["server"], ports=(9999, 8501), options=("--read-only",)) as container:
        container.wait_healthy()
        yield container


def classify_rest(url: str, photo: bytes) -> str:
    reply = httpx.post(
        f"{url}/v1/models/imagenet:classify",
        content=photo,
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    label: str = reply.json()["results"][0][0][0]
    return label


def classify_v2(url: str, model: str, photo: bytes) -> str:
    """The top class, as OIP v2's `classification` output writes it ("score:index:label")."""
    body = {
        "inputs": [
            {
                "name": "image",
                "shape": [1, 1],
                "datatype": "BYTES",
                "data": [base64.b64encode(photo).decode()],
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
    }
    reply = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["outputs"][0]["data"][0])


def test_image_sizes_are_bounded(images: dict[str, str]) -> None:
    sizes = {target: image_size(name) for target, name in images.items()}
    print("image sizes: " + ", ".join(f"{t} {s / MB:.0f} MB" for t, s in sizes.items()))
    for target, size in sizes.items():
        assert size <= SIZE_LIMITS[target], (target, size)


def test_the_healthcheck_turns_healthy(server: Container) -> None:
    assert server.inspect("{{.Config.Healthcheck.Test}}").count("pyserving health") == 1
    assert server.healthy()


def test_server_serves_seed_client_rest_and_v2_read_only_as_its_user(
    server: Container, chelsea_jpeg: bytes, coffee_jpeg: bytes, tmp_path: Path
) -> None:
    assert server.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    who = podman("exec", server.name, "python", "-c", "import os; print(os.getuid())")
    assert who.stdout.strip() == "10001"
    root_mount = podman(
        "exec", server.name, "python", "-c", "print(open('/proc/self/mounts').read())"
    )
    (root,) = [line for line in root_mount.stdout.splitlines() if line.split()[1:2] == ["/"]]
    assert "ro" in root.split()[3].split(","), root

    seed = seed_classify(server.address(9999), [chelsea_jpeg, coffee_jpeg], tmp_path / "seed")
    assert [classes[0][0] for classes in seed] == ["Egyptian cat", "espresso"]

    assert classify_rest(server.url(8501), chelsea_jpeg) == "Egyptian cat"
    assert "espresso" in classify_v2(server.url(8501), "imagenet", coffee_jpeg)


class Load:
    """Plain generated stubs (no retries) calling classify in a loop; their status codes."""

    def __init__(self, address: str, photo: bytes, threads: int = 4) -> None:
        self.codes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._request = pb.ClassificationRequest(input=photo)
        self._threads = [
            threading.Thread(target=self._run, args=(address,)) for _ in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def count(self, code: str) -> int:
        with self._lock:
            return self.codes[code]

    def _run(self, address: str) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.ClassificationServiceStub(channel)
            while not self._stop.is_set():
                try:
                    stub.classify(self._request, timeout=30)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with self._lock:
                    self.codes[code] += 1


def test_sigterm_under_load_loses_no_call_and_exits_0(
    images: dict[str, str], chelsea_jpeg: bytes
) -> None:
    with running(images["server"], ports=(9999,), options=("--read-only",)) as server:
        server.wait_healthy()
        with Load(server.address(9999), chelsea_jpeg) as load:
            wait_for(lambda: load.count("OK") >= 20, 60, "20 answers under load")
            # podman stop sends the image's STOPSIGNAL (SIGTERM) and waits up to -t seconds.
            podman("stop", "--time", "40", server.name, timeout=60)
            exit_code = server.inspect("{{.State.ExitCode}}")
        print(f"SIGTERM under load: {dict(load.codes)}")
        assert exit_code == "0", server.logs()
        assert set(load.codes) <= {"OK", "UNAVAILABLE"}, (load.codes, server.logs())
        assert "refusing new requests" in server.logs()


def test_a_cpu_limit_sizes_the_server_in_its_container(images: dict[str, str]) -> None:
    """`--cpus` (a Kubernetes `limits.cpu`) sets the batch threads, not the node's cores."""
    cpus = cpu_set_size()
    if cpus < 2:
        pytest.skip("one core in the CPU set: no limit can be lower")
    limit = f"{cpus - 0.5:g}"  # rounds down to one core fewer
    options = ("--read-only", "--cpus", limit)
    with running(images["server"], ports=(9999,), options=options) as server:
        server.wait_healthy()
        logs = server.logs()
    assert f"sized for {cpus - 1} core(s): the cgroup CPU limit of {limit}" in logs, logs
    assert f"{cpus - 1} batch thread(s)" in logs, logs


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())[
        "services"
    ]
    return services


def test_compose_services_on_a_network_classify_an_upload(
    images: dict[str, str], chelsea_jpeg: bytes
) -> None:
    """compose.yaml's services as podman runs them: one network, each service's name its alias."""
    services = compose_services()
    assert set(services) == {"server", "web"}
    with (
        network() as net,
        running(
            images["server"],
            *services["server"].get("command", []),
            ports=[int(p.split(":")[-1]) for p in services["server"]["ports"]],
            options=(f"--network={net}", "--network-alias=server", "--read-only"),
        ) as server,
    ):
        # depends_on: service_healthy, as compose waits for it.
        assert services["web"]["depends_on"]["server"]["condition"] == "service_healthy"
        server.wait_healthy()
        with running(
            images["web"],
            *services["web"]["command"],
            ports=[int(p.split(":")[-1]) for p in services["web"]["ports"]],
            options=(f"--network={net}", "--network-alias=web", "--read-only"),
        ) as web:
            web.wait_healthy(60)
            reply = httpx.post(
                f"{web.url(8080)}/api/classify",
                files=[("images", ("cat.jpg", chelsea_jpeg, "image/jpeg"))],
                timeout=30,
            )
            assert reply.status_code == 200, reply.text + web.logs()
            (result,) = reply.json()["results"]
            assert result["predictions"][0]["name"] == "Egyptian cat", result
            photos = [("images", (f"{i}.jpg", jpeg(i), "image/jpeg")) for i in range(8)]
            many = httpx.post(f"{web.url(8080)}/api/classify", files=photos, timeout=60)
            assert many.status_code == 200 and len(many.json()["results"]) == 8, many.text
            assert all("predictions" in r for r in many.json()["results"]), many.text


def available_versions(url: str) -> set[int]:
    try:
        status = httpx.get(f"{url}/v1/models/imagenet", timeout=5).json()
    except httpx.HTTPError:
        return set()
    return {
        int(v["version"])
        for v in status.get("model_version_status", [])
        if v["state"] == "AVAILABLE"
    }


def test_the_export_image_writes_a_version_that_a_running_server_picks_up(
    images: dict[str, str], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    # The volume holds the image's baked-in version to start with, owned by the image's user.
    podman(
        "run", "--rm", "--user=0", "--entrypoint=cp", f"--volume={models}:/out",
        *ULIMITS, images["server"], "-a", "/models/imagenet", "/out/",
    )  # fmt: skip
    os.chown(models, 10001, 10001)
    for path in models.rglob("*"):
        os.chown(path, 10001, 10001)
    (first,) = [int(p.name) for p in (models / "imagenet").iterdir()]
    with running(
        images["server"],
        *SERVE,
        "--file_system_poll_wait_seconds",
        "1",
        ports=(8501,),
        options=("--read-only", f"--volume={models}:/models:ro"),
    ) as server:
        server.wait_healthy()
        assert available_versions(server.url(8501)) == {first}
        # As deploy/kubernetes/export-job.yaml runs it: the image's own command, uid 10001.
        export = podman(
            "run", "--rm", "--user=10001:10001", "--env=HOME=/tmp", f"--volume={models}:/models",
            *ULIMITS, images["export"],
            timeout=600,
        )  # fmt: skip
        versions = sorted(int(p.name) for p in (models / "imagenet").iterdir() if p.name.isdigit())
        assert len(versions) == 2 and versions[0] == first, (versions, export.stdout, export.stderr)
        wait_for(
            lambda: versions[1] in available_versions(server.url(8501)),
            120,
            f"version {versions[1]} to be served",
        )
