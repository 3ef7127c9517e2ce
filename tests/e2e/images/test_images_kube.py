"""deploy/kubernetes/ and deploy/kserve/ played by `podman kube play` on the session's images.

What a copy of each manifest changes, and why: the image names (the images built from the
working tree); `hostPort` and `hostIP: 127.0.0.1` on each container port (kube play publishes
only those); the volume claim's name (one of the test's own); the web Deployment's replicas
to 1 (two pods cannot share one host port). Services, the autoscaler, the disruption budget
and the export Job are kinds kube play does not run: tests/test_deploy.py checks them against
the API schemas and each other. The gRPC Service's name is given to the server pod as a
network alias, which is what the Service gives it in a cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.containers import ROOT, ULIMITS, image, missing_reason, network, podman
from tests.e2e.images.test_images import classify_rest, classify_v2
from tests.processes import free_port, wait_for

KUBERNETES = ROOT / "deploy" / "kubernetes"
SERVING_RUNTIME = ROOT / "deploy" / "kserve" / "serving-runtime.yaml"
INFERENCE_SERVICE = ROOT / "deploy" / "kserve" / "inference-service.yaml"

_REASON = missing_reason()
pytestmark = pytest.mark.skipif(bool(_REASON), reason=_REASON or "podman runs here")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def publish(container: dict[str, Any]) -> dict[int, int]:
    """Give each container port a free host port on 127.0.0.1; container port: host port."""
    published = {}
    for port in container.get("ports", []):
        port["hostPort"] = published[port["containerPort"]] = free_port()
        port["hostIP"] = "127.0.0.1"
    return published


def deployment(path: Path, claim: str) -> tuple[dict[str, Any], dict[int, int]]:
    """The file's Deployment, played as the test needs it (see the module's docstring)."""
    (found,) = [d for d in documents(path) if d["kind"] == "Deployment"]
    found["spec"]["replicas"] = 1
    spec = pod_spec(found)
    ports: dict[int, int] = {}
    for container in spec["containers"]:
        container["image"] = "localhost/" + container["image"].replace(":0.1.0", ":tests")
        ports |= publish(container)
    for volume in spec.get("volumes", []):
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = claim
    return found, ports


@contextmanager
def played(resource: dict[str, Any], folder: Path, net: str) -> Iterator[str]:
    """`podman kube play` one resource on network `net`; yields the file; `kube down` after."""
    path = folder / f"{resource['metadata']['name']}-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(resource))
    done = podman("kube", "play", "--network", net, str(path), check=False, timeout=180)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield str(path)
    finally:
        podman("kube", "down", str(path), check=False, timeout=120)


def seeded_volume(images: dict[str, str], name: str) -> None:
    """A volume holding the server image's baked-in version, as the export Job would leave it."""
    podman("volume", "create", name)
    podman(
        "run", "--rm", "--user=0", "--entrypoint=cp", f"--volume={name}:/out", *ULIMITS,
        images["server"], "-a", "/models/imagenet", "/out/",
    )  # fmt: skip


def rest_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_kube_play_server_and_web_classify_through_published_ports(
    images: dict[str, str], chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    claim = f"pyserving-test-{uuid.uuid4().hex[:10]}"
    (pvc,) = documents(KUBERNETES / "models-pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim"
    # The claim's name in server.yaml is the one models-pvc.yaml makes; the test's own here.
    assert f"claimName: {pvc['metadata']['name']}" in (KUBERNETES / "server.yaml").read_text()
    seeded_volume(images, claim)
    server, server_ports = deployment(KUBERNETES / "server.yaml", claim)
    web, web_ports = deployment(KUBERNETES / "web.yaml", claim)
    (volume,) = [v for v in pod_spec(server)["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    (web_container,) = pod_spec(web)["containers"]
    service = web_container["args"][web_container["args"].index("--server") + 1].split(":")[0]
    try:
        with network() as net, played(server, tmp_path, f"{net}:alias={service}"):
            rest = f"http://127.0.0.1:{server_ports[8501]}"
            wait_for(lambda: rest_ready(rest), 120, "the played server to be ready")
            assert classify_rest(rest, chelsea_jpeg) == "Egyptian cat"
            with played(web, tmp_path, net):
                url = f"http://127.0.0.1:{web_ports[8080]}"

                def classified() -> httpx.Response | None:
                    try:
                        reply = httpx.post(
                            f"{url}/api/classify",
                            files=[("images", ("cat.jpg", chelsea_jpeg, "image/jpeg"))],
                            timeout=30,
                        )
                    except httpx.HTTPError:
                        return None
                    return reply if reply.status_code == 200 else None

                reply = wait_for(classified, 120, "the played web app to classify")
                (result,) = reply.json()["results"]
                assert result["predictions"][0]["name"] == "Egyptian cat", result
    finally:
        podman("volume", "rm", "--force", claim, check=False)


def test_kserve_serving_runtime_container_serves_v2(
    images: dict[str, str], coffee_jpeg: bytes, tmp_path: Path
) -> None:
    """The runtime's container in a Pod, as KServe would make it for inference-service.yaml."""
    (runtime,) = documents(SERVING_RUNTIME)
    (isvc,) = documents(INFERENCE_SERVICE)
    model = isvc["metadata"]["name"]
    (container,) = runtime["spec"]["containers"]
    container["image"] = image("server")
    container["args"] = [a.replace("{{.Name}}", model) for a in container["args"]]
    ports = publish(container)
    # KServe's storage initializer leaves the model's versions in /mnt/models.
    models = tmp_path / "mnt-models"
    podman(
        "run", "--rm", "--user=0", "--entrypoint=sh", f"--volume={tmp_path}:/out", *ULIMITS,
        images["server"], "-c", "cp -a /models/imagenet /out/mnt-models",
    )  # fmt: skip
    container["volumeMounts"] = [{"name": "models", "mountPath": "/mnt/models", "readOnly": True}]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"kserve-{uuid.uuid4().hex[:8]}"},
        "spec": {
            "containers": [container],
            "volumes": [{"name": "models", "hostPath": {"path": str(models)}}],
        },
    }
    with network() as net, played(pod, tmp_path, net):
        url = f"http://127.0.0.1:{ports[8080]}"
        wait_for(lambda: rest_ready(url), 120, "the runtime's container to be ready")
        assert "espresso" in classify_v2(url, model, coffee_jpeg)
        assert b"pyserving_" in httpx.get(f"{url}/metrics", timeout=10).content
