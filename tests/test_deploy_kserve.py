"""deploy/kserve/: the ClusterServingRuntime and InferenceServices, checked offline.

kubernetes-validate has no schema for KServe's custom resources, so their fields are
checked here; the runtime's container is schema-checked as a Pod's container, and its
arguments parse with pyserving's own command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pyserving.cli.main import build_parser
from tests.test_deploy import KUBERNETES_VERSIONS, kubernetes_validate

ROOT = Path(__file__).resolve().parents[1]
KSERVE = ROOT / "deploy" / "kserve"


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((KSERVE / name).read_text())
    assert isinstance(doc, dict)
    return doc


def runtime() -> dict[str, Any]:
    doc = load("serving-runtime.yaml")
    assert (doc["apiVersion"], doc["kind"]) == (
        "serving.kserve.io/v1alpha1",
        "ClusterServingRuntime",
    )
    return doc


def test_the_runtime_serves_onnx_over_v2_from_mnt_models() -> None:
    spec = runtime()["spec"]
    assert {"name": "onnx", "version": "1", "autoSelect": True, "priority": 2} in spec[
        "supportedModelFormats"
    ]
    assert spec["protocolVersions"] == ["v2"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe looks for
    assert container["image"] == "pyserving-server:0.1.0"
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    args = build_parser().parse_args(
        [a.replace("{{.Name}}", "imagenet") for a in container["args"]]
    )
    assert args.model_base_path == Path("/mnt/models")  # where KServe puts storageUri
    assert args.model_name == "imagenet"
    assert (args.rest_api_port, args.port) == (8080, 8081)
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["port"] == args.rest_api_port


def test_the_runtime_container_matches_the_pod_schema(tmp_path: Path) -> None:
    (container,) = runtime()["spec"]["containers"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [container]},
    }
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    done = kubernetes_validate([path], KUBERNETES_VERSIONS[-1])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_inference_services_ask_for_this_runtime() -> None:
    name = runtime()["metadata"]["name"]
    for file, port in (("inference-service.yaml", None), ("inference-service-grpc.yaml", 8081)):
        doc = load(file)
        assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
        model = doc["spec"]["predictor"]["model"]
        assert model["runtime"] == name and model["modelFormat"]["name"] == "onnx"
        assert model["protocolVersion"] == "v2" and model["storageUri"]
        if port is not None:
            assert model["ports"] == [{"name": "h2c", "containerPort": port, "protocol": "TCP"}]
